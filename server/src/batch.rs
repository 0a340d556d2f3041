//! Cross-user batching: compatible jobs become the invokes of one program — one batched forward
//! pass (or one generation) for all of them — and the merged outcome is split back per job.
//!
//! A job can join a batch when its program is one trace whose invokes each have their own input
//! (an invoke without one sees the whole batch: other users' rows), and that neither skips a
//! module nor stops the pass (both act on every row). Jobs batch with jobs of the same
//! [`Class`]: the same longest prompt — prompts are left-padded to the batch's longest, so a job
//! sees exactly the padding it has alone, and every position it names is the one it means —
//! and the same mode: forward passes with forward passes, generations with generations of the
//! same length and greedy decoding without stopping at an end-of-sequence token (a sampled
//! generation draws from one generator for the whole batch, so it runs alone; so does one that
//! stops at its own end-of-sequence token, whose later steps alone would not exist). A batch
//! holds at most a token budget of prompt positions (rows × the prompt length) and a number of
//! jobs.
//!
//! Merging renames what could collide — every save, log label and attached tensor is prefixed
//! with the job's number (`3:name`) — and moves `shared` references by the job's first invoke;
//! splitting strips the prefixes.

use std::collections::BTreeMap;
use std::ops::Range;

use nnsight_remote::interpret::{Outcome, Value};
use nnsight_remote::ir::{Generate, Input, Node, Op, Program, Sampler, Trace};

use crate::hosted::Cpu;

/// What jobs must share to batch: the length of their longest prompt, and `None` for a forward
/// pass, else the generation options.
#[derive(Clone, Debug, PartialEq)]
pub struct Class {
    /// The longest prompt, in tokens.
    pub longest: usize,
    /// The generation options, for a generation.
    pub generate: Option<Generate>,
}

/// The class of `program`, or `None` when it must run alone.
pub fn class(program: &Program) -> Option<Class> {
    let [trace] = program.traces.as_slice() else { return None };
    if trace.invokes.iter().any(|i| i.input.is_none()) {
        return None;
    }
    let acts_on_every_row = |n: &Node| matches!(n.op, Op::Stop | Op::Skip { .. });
    if trace.invokes.iter().flat_map(|i| &i.nodes).any(acts_on_every_row) {
        return None;
    }
    let longest = footprint(program).1;
    match &trace.generate {
        None => Some(Class { longest, generate: None }),
        Some(g) if matches!(g.sampler, Sampler::Greedy) && !g.stop_at_eos => {
            Some(Class { longest, generate: Some(g.clone()) })
        }
        Some(_) => None,
    }
}

/// The padded positions `program`'s invokes take in a batch: (rows, longest prompt).
pub fn footprint(program: &Program) -> (usize, usize) {
    let invokes = program.traces.iter().flat_map(|t| &t.invokes);
    let longest = invokes
        .clone()
        .map(|i| match &i.input {
            Some(Input::Tokens(ids)) => ids.len(),
            _ => 1,
        })
        .max()
        .unwrap_or(1);
    (invokes.count(), longest)
}

/// One batched program: the merged program and which invokes are whose.
#[derive(Debug)]
pub struct Merged {
    /// The program.
    pub program: Program,
    /// Job `k`'s invokes.
    pub invokes: Vec<Range<usize>>,
}

impl Merged {
    /// The job that invoke `invoke` belongs to.
    pub fn owner(&self, invoke: usize) -> Option<usize> {
        self.invokes.iter().position(|r| r.contains(&invoke))
    }
}

/// The one-trace programs of `jobs` (all of one [`Class`]) as one.
pub fn merge(jobs: &[&Program]) -> Merged {
    let mut invokes = Vec::new();
    let mut ranges = Vec::with_capacity(jobs.len());
    let generate = jobs.first().and_then(|p| p.traces.first()).and_then(|t| t.generate.clone());
    for (k, program) in jobs.iter().enumerate() {
        let start = invokes.len();
        for invoke in program.traces.iter().flat_map(|t| &t.invokes) {
            let mut invoke = invoke.clone();
            for node in &mut invoke.nodes {
                rename(node, k, start as u32);
            }
            invokes.push(invoke);
        }
        ranges.push(start..invokes.len());
    }
    Merged { program: Program::new(vec![Trace { invokes, generate }]), invokes: ranges }
}

/// `node` renamed for job `k`, whose first invoke is `base`.
fn rename(node: &mut Node, k: usize, base: u32) {
    match &mut node.op {
        Op::Save { name, .. } | Op::Tensor { name } => *name = format!("{k}:{name}"),
        Op::Log { label, .. } => *label = format!("{k}:{label}"),
        Op::Shared { invoke, .. } => *invoke += base,
        Op::Edit { body, .. } => body.iter_mut().for_each(|n| rename(n, k, base)),
        _ => {}
    }
}

/// The attached tensors of every job, renamed as [`merge`] renames their uses.
pub fn merge_tensors(jobs: Vec<BTreeMap<String, Value<Cpu>>>) -> BTreeMap<String, Value<Cpu>> {
    let mut out = BTreeMap::new();
    for (k, tensors) in jobs.into_iter().enumerate() {
        out.extend(tensors.into_iter().map(|(name, value)| (format!("{k}:{name}"), value)));
    }
    out
}

/// The merged outcome of `jobs` jobs split back: each job's saves and log lines, names as it
/// gave them.
pub fn split(outcome: Outcome<Cpu>, jobs: usize) -> Vec<Outcome<Cpu>> {
    let mut out: Vec<Outcome<Cpu>> =
        (0..jobs).map(|_| Outcome { saves: BTreeMap::new(), log: Vec::new() }).collect();
    let owner = |text: &str| -> Option<(usize, String)> {
        let (k, rest) = text.split_once(':')?;
        Some((k.parse().ok()?, rest.to_owned()))
    };
    for (name, value) in outcome.saves {
        if let Some((k, name)) = owner(&name)
            && let Some(job) = out.get_mut(k)
        {
            job.saves.insert(name, value);
        }
    }
    for line in outcome.log {
        if let Some((k, line)) = owner(&line)
            && let Some(job) = out.get_mut(k)
        {
            job.log.push(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use nnsight_remote::ir::{Invoke, Site, SiteKind};

    use super::*;

    fn program(nodes: Vec<Op>, input: Option<Input>) -> Program {
        let nodes = nodes.into_iter().map(Node::new).collect();
        Program::new(vec![Trace { invokes: vec![Invoke { input, nodes }], generate: None }])
    }

    fn read() -> Op {
        Op::Read { site: Site { path: "transformer.h.0".into(), kind: SiteKind::Output, occurrence: 0 } }
    }

    #[test]
    fn what_acts_on_other_rows_runs_alone() {
        let tokens = Some(Input::Tokens(vec![1, 2]));
        assert_eq!(class(&program(vec![read()], tokens.clone())), Some(Class { longest: 2, generate: None }));
        assert_eq!(class(&program(vec![read()], None)), None, "an invoke without input sees every row");
        assert_eq!(class(&program(vec![Op::Stop], tokens.clone())), None);
        let two = Program::new(
            [program(vec![read()], tokens.clone()).traces, program(vec![read()], tokens).traces].concat(),
        );
        assert_eq!(class(&two), None, "a session runs alone");
    }

    #[test]
    fn merging_renames_what_could_collide_and_splitting_restores_it() {
        let tokens = Some(Input::Tokens(vec![1, 2, 3]));
        let a = program(vec![read(), Op::Save { name: "h".into(), value: 0, cast: None }], tokens.clone());
        let b = program(
            vec![
                read(),
                Op::Shared { invoke: 0, node: 0 },
                Op::Save { name: "h".into(), value: 1, cast: None },
            ],
            tokens,
        );
        let merged = merge(&[&a, &b]);
        assert_eq!(merged.invokes, [0..1, 1..2]);
        assert_eq!(merged.owner(1), Some(1));
        let nodes = &merged.program.traces[0].invokes[1].nodes;
        assert_eq!(nodes[1].op, Op::Shared { invoke: 1, node: 0 }, "b's own first invoke, now invoke 1");
        assert!(matches!(&nodes[2].op, Op::Save { name, .. } if name == "1:h"));
        assert_eq!(footprint(&merged.program), (2, 3));
    }
}
