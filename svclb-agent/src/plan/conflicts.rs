//! Frontends claimed by more than one Service port: one deterministic winner (the
//! older Service, then namespace/name order, then the lower port index), one error
//! per losing field.
use std::{cmp::Ordering, collections::BTreeMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::errors::{ErrorKind, PlanError};
use crate::model::{Frontend, FrontendKind, SetKey};

/// A Service's conflict priority (lower wins): older creationTimestamp first, unset
/// counting as newest, then `namespace/name`. Two Services never compare equal.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Priority {
    pub unset: bool,
    pub created: Option<Time>,
    /// `namespace/name`.
    pub key: String,
}

impl Priority {
    pub fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        let created = meta.creation_timestamp.clone();
        Priority {
            unset: created.is_none(),
            created,
            key: crate::source::objects::key(meta),
        }
    }
}

/// A Service port's wish to own a frontend.
#[derive(Clone, Debug)]
pub(crate) struct Claim {
    pub frontend: Frontend,
    pub kind: FrontendKind,
    pub set: SetKey,
    pub priority: Priority,
    pub port_index: usize,
    /// `Service ns/name`.
    pub object: String,
    /// Field that gave the address (`spec.clusterIP`, `spec.externalIPs[0]`, ...).
    pub addr_field: String,
    /// Field that gave the port (`spec.ports[0].port` or `.nodePort`).
    pub port_field: String,
}

impl Claim {
    /// Order among the claims on one frontend: the first one wins.
    pub fn order(&self, other: &Claim) -> Ordering {
        (&self.priority, self.port_index, self.kind).cmp(&(
            &other.priority,
            other.port_index,
            other.kind,
        ))
    }

    /// The field to blame when this claim collides with `other`: between two ports of
    /// one Service it is the port; between two Services it is the address, except for
    /// NodePorts, whose address is the node's and whose own field is the nodePort.
    fn field_against(&self, other: &Claim) -> &str {
        if self.priority == other.priority {
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

/// Frontends lost, grouped by (loser object, loser field, "winner field" text).
#[derive(Debug, Default)]
pub(crate) struct Losses(BTreeMap<(String, String, String), Vec<Frontend>>);

impl Losses {
    /// Notes the losers of one frontend's claims, sorted by [`Claim::order`]. Claims of
    /// the winner's own set (the address listed twice, say as clusterIP and externalIP
    /// of one port) lose nothing: the frontend is served as asked.
    pub fn add(&mut self, group: &[Claim]) {
        let Some((winner, losers)) = group.split_first() else {
            return;
        };
        for loser in losers.iter().filter(|l| l.set != winner.set) {
            let by = if loser.priority == winner.priority {
                format!("{} of the same Service", winner.field_against(loser))
            } else {
                format!("{} {}", winner.object, winner.field_against(loser))
            };
            let key = (
                loser.object.clone(),
                loser.field_against(winner).to_string(),
                by,
            );
            self.0.entry(key).or_default().push(loser.frontend);
        }
    }

    /// One error per (loser field, winner), listing every frontend lost that way (a
    /// NodePort conflict covers all node addresses).
    pub fn errors(self) -> impl Iterator<Item = PlanError> {
        self.0
            .into_iter()
            .map(|((object, field, by), mut frontends)| {
                frontends.sort();
                let list: Vec<String> = frontends.iter().map(Frontend::to_string).collect();
                let (noun, verb) = if list.len() == 1 {
                    ("frontend", "is")
                } else {
                    ("frontends", "are")
                };
                PlanError {
                    object,
                    field,
                    kind: ErrorKind::Conflict,
                    message: format!(
                        "{noun} {} {verb} already used by {by}; dropped here",
                        list.join(", ")
                    ),
                }
            })
    }
}
