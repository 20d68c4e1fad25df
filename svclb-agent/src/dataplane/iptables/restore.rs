//! The `iptables-restore --noflush` payload that turns what was applied into what is
//! desired, touching only the chains that differ (pure).
//!
//! With `--noflush`, `:CHAIN - [0:0]` creates the chain or flushes it, and every other
//! chain is left alone: a changed chain is declared and written in full; a chain no
//! longer desired is flushed and deleted with `-X` (after every rule that jumped to it
//! was rewritten in the same transaction). Each table is one atomic transaction.
use std::{collections::BTreeMap, fmt::Write as _};

use super::rules::{Chains, Table};

/// What the kernel holds per chain: its rules, or `None` for a chain of ours found at
/// start whose content is not known (it is rewritten or deleted on the first sync).
pub type Applied = BTreeMap<(Table, String), Option<Vec<String>>>;

/// The payload and how many chains it writes or deletes; `None` when nothing differs.
pub fn payload(desired: &Chains, applied: &Applied) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut count = 0;
    for table in [Table::Filter, Table::Nat] {
        let changed: Vec<(&String, &Vec<String>)> = desired
            .iter()
            .filter(|((t, _), _)| *t == table)
            .filter(|(k, rules)| applied.get(*k).is_none_or(|a| a.as_ref() != Some(*rules)))
            .map(|((_, c), rules)| (c, rules))
            .collect();
        let removed: Vec<&String> = applied
            .keys()
            .filter(|(t, c)| *t == table && !desired.contains_key(&(table, c.clone())))
            .map(|(_, c)| c)
            .collect();
        if changed.is_empty() && removed.is_empty() {
            continue;
        }
        count += changed.len() + removed.len();
        let _ = writeln!(out, "*{}", table.as_str());
        for chain in changed
            .iter()
            .map(|(c, _)| *c)
            .chain(removed.iter().copied())
        {
            let _ = writeln!(out, ":{chain} - [0:0]");
        }
        for (chain, rules) in &changed {
            for rule in rules.iter() {
                let _ = writeln!(out, "-A {chain} {rule}");
            }
        }
        for chain in &removed {
            let _ = writeln!(out, "-X {chain}");
        }
        out.push_str("COMMIT\n");
    }
    (count > 0).then_some((out, count))
}

/// The payload that flushes and deletes `chains` (cleanup).
pub fn delete_all(chains: &[(Table, String)]) -> String {
    let mut out = String::new();
    for table in [Table::Filter, Table::Nat] {
        let mine: Vec<&String> = chains
            .iter()
            .filter(|(t, _)| *t == table)
            .map(|(_, c)| c)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let _ = writeln!(out, "*{}", table.as_str());
        for c in &mine {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for c in &mine {
            let _ = writeln!(out, "-X {c}");
        }
        out.push_str("COMMIT\n");
    }
    out
}
