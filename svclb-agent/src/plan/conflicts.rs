//! Frontends claimed by more than one Service port: one deterministic winner (the
//! older Service, then namespace/name order, then the lower port index), one error
//! per losing field.
use std::collections::BTreeMap;

use super::errors::{ErrorKind, PlanError};
use crate::model::{BackendSet, Frontend, FrontendKind, SetKey};

/// A Service port's wish to own a frontend.
#[derive(Clone, Debug)]
pub(crate) struct Claim {
    pub frontend: Frontend,
    pub kind: FrontendKind,
    pub set: SetKey,
    /// The Service's position in priority order (lower wins).
    pub rank: usize,
    pub port_index: usize,
    /// `Service ns/name`.
    pub object: String,
    /// Field that gave the address (`spec.clusterIP`, `spec.externalIPs[0]`, ...).
    pub addr_field: String,
    /// Field that gave the port (`spec.ports[0].port` or `.nodePort`).
    pub port_field: String,
}

impl Claim {
    /// The field to blame when this claim collides with `other`: between two ports of
    /// one Service it is the port; between two Services it is the address, except for
    /// NodePorts, whose address is the node's and whose own field is the nodePort.
    fn field_against(&self, other: &Claim) -> &str {
        if self.rank == other.rank {
            if self.port_index == other.port_index {
                &self.addr_field
            } else {
                &self.port_field
            }
        } else if self.kind == FrontendKind::NodePort {
            &self.port_field
        } else {
            &self.addr_field
        }
    }
}

/// Gives each frontend to its winning claim, inserting it in that claim's set.
/// Losers' frontends are dropped with one error per (loser field, winner), listing
/// every frontend lost that way (a NodePort conflict covers all node addresses).
pub(crate) fn resolve(
    mut claims: Vec<Claim>,
    sets: &mut BTreeMap<SetKey, BackendSet>,
    errors: &mut Vec<PlanError>,
) {
    claims.sort_by(|a, b| {
        (a.frontend, a.rank, a.port_index, a.kind).cmp(&(b.frontend, b.rank, b.port_index, b.kind))
    });
    let mut lost: BTreeMap<(String, String, String), Vec<Frontend>> = BTreeMap::new();
    for group in claims.chunk_by(|a, b| a.frontend == b.frontend) {
        let winner = &group[0];
        if let Some(set) = sets.get_mut(&winner.set) {
            set.frontends.insert(winner.frontend, winner.kind);
        }
        for loser in &group[1..] {
            // Same set: the address is listed twice (say as clusterIP and externalIP
            // of one port); the frontend is served as asked, nothing is lost.
            if loser.set == winner.set {
                continue;
            }
            let by = if loser.rank == winner.rank {
                format!("{} of the same Service", winner.field_against(loser))
            } else {
                format!("{} {}", winner.object, winner.field_against(loser))
            };
            let key = (
                loser.object.clone(),
                loser.field_against(winner).to_string(),
                by,
            );
            lost.entry(key).or_default().push(loser.frontend);
        }
    }
    for ((object, field, by), frontends) in lost {
        let list: Vec<String> = frontends.iter().map(Frontend::to_string).collect();
        let (noun, verb) = if list.len() == 1 {
            ("frontend", "is")
        } else {
            ("frontends", "are")
        };
        errors.push(PlanError {
            object,
            field,
            kind: ErrorKind::Conflict,
            message: format!(
                "{noun} {} {verb} already used by {by}; dropped here",
                list.join(", ")
            ),
        });
    }
}
