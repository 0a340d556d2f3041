//! The end of a recording: dead nodes out, and the IR's numbering in.
//!
//! burn's default decompositions of fused operations leave their steps on the tape after the
//! fused node replaced them (see [`fuse`](super::fuse)): a node whose value no kept node needs
//! is dropped. A node is kept when it acts (a write, a skip, a save, a standing edit, ...), reads
//! a site, or is used by a kept node — of its invoke, through `shared` from a later invoke, or
//! from a standing edit's body (whose last node, the edit's value, is always kept). The kept
//! nodes are then numbered as the IR numbers them: in order, an edit's body nodes right after it.

use std::collections::HashMap;

use super::tape::body_ref;
use crate::ir::{Node, Op, Ref, Trace};

/// Prunes and renumbers the nodes of `trace` (recorded with the tape's names).
pub(crate) fn prune(trace: &mut Trace) {
    let n = trace.invokes.len();
    // Live nodes by recording name, per invoke.
    let mut live: Vec<HashMap<Ref, bool>> = vec![HashMap::new(); n];
    for i in (0..n).rev() {
        let nodes = &trace.invokes[i].nodes;
        for (e, node) in nodes.iter().enumerate().rev() {
            let r = e as Ref;
            let keep = !node.op.has_value() || matches!(node.op, Op::Read { .. }) || live[i].contains_key(&r);
            if !keep {
                continue;
            }
            live[i].insert(r, true);
            if let Op::Edit { body, .. } = &node.op {
                for (k, inner) in body.iter().enumerate().rev() {
                    let name = body_ref(r, k).unwrap_or(r);
                    if k + 1 == body.len() || matches!(inner.op, Op::Arg) || live[i].contains_key(&name) {
                        live[i].insert(name, true);
                        mark(&mut live, i, &inner.op);
                    }
                }
            }
            mark(&mut live, i, &node.op);
        }
    }
    // The IR's numbers of the kept nodes.
    let mut numbers: Vec<HashMap<Ref, Ref>> = vec![HashMap::new(); n];
    for (i, invoke) in trace.invokes.iter().enumerate() {
        let mut next: Ref = 0;
        for (e, node) in invoke.nodes.iter().enumerate() {
            let r = e as Ref;
            if !live[i].contains_key(&r) {
                continue;
            }
            numbers[i].insert(r, next);
            next += 1;
            if let Op::Edit { body, .. } = &node.op {
                for k in 0..body.len() {
                    let name = body_ref(r, k).unwrap_or(r);
                    if live[i].contains_key(&name) {
                        numbers[i].insert(name, next);
                        next += 1;
                    }
                }
            }
        }
    }
    for (i, invoke) in trace.invokes.iter_mut().enumerate() {
        let nodes = std::mem::take(&mut invoke.nodes);
        for (e, mut node) in nodes.into_iter().enumerate() {
            let r = e as Ref;
            if !live[i].contains_key(&r) {
                continue;
            }
            if let Op::Edit { body, .. } = &mut node.op {
                let old = std::mem::take(body);
                for (k, mut inner) in old.into_iter().enumerate() {
                    let name = body_ref(r, k).unwrap_or(r);
                    if live[i].contains_key(&name) {
                        renumber(&mut inner, &numbers, i);
                        body.push(inner);
                    }
                }
            }
            renumber(&mut node, &numbers, i);
            invoke.nodes.push(node);
        }
    }
}

/// Marks what `op` (a kept node of invoke `i`) uses as live.
fn mark(live: &mut [HashMap<Ref, bool>], i: usize, op: &Op) {
    for r in op.inputs() {
        live[i].insert(r, true);
    }
    if let Op::Shared { invoke, node } = op
        && let Some(other) = live.get_mut(*invoke as usize)
    {
        other.insert(*node, true);
    }
}

/// Rewrites the references of `node` (of invoke `i`) to the IR's numbers.
fn renumber(node: &mut Node, numbers: &[HashMap<Ref, Ref>], i: usize) {
    for r in node.op.inputs_mut() {
        *r = numbers[i].get(r).copied().unwrap_or(*r);
    }
    if let Op::Shared { invoke, node: r } = &mut node.op
        && let Some(new) = numbers.get(*invoke as usize).and_then(|m| m.get(r))
    {
        *r = *new;
    }
}
