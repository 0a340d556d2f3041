//! The tape of one recording: the program being built, and where each tensor the bodies touch
//! comes from — a site the body read, a node it computed, a constant, a model parameter.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use burn_backend::TensorData;
use burn_ir::{OperationIr, TensorId, TensorIr};

use super::lower;
use crate::ir::{Generate, Input, Invoke, Location, Node, Op, Ref, Trace};

/// Where a tensor a body uses comes from: node `node` of invoke `invoke` of trace `trace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) trace: usize,
    pub(crate) invoke: usize,
    pub(crate) node: Ref,
}

/// The first reason the recording cannot stand for the body, with where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) what: String,
    pub(crate) at: Option<Location>,
}

/// One recording's state (one per recording thread, kept by the device's client).
#[derive(Default)]
pub(crate) struct Tape {
    pub(crate) traces: Vec<Trace>,
    /// The inputs the next trace's invokes were given (`Err`: one the IR cannot hold).
    pub(crate) inputs: Vec<Result<Option<Input>, String>>,
    /// The trace running, if one is.
    pub(crate) trace: Option<usize>,
    /// How many bodies of the running trace are persistent edits (they come first).
    pub(crate) edits: usize,
    /// The invoke whose body is being polled (not counting the engine's own work).
    pub(crate) body: Option<usize>,
    /// The body being polled, while the engine works on a served value.
    pub(crate) paused: Option<usize>,
    pub(crate) origins: HashMap<TensorId, Origin>,
    /// Model parameters, by tensor.
    pub(crate) params: HashMap<TensorId, String>,
    /// Values made available in an invoke other than their own (a shared, saved, literal or
    /// parameter node), by (trace, invoke, tensor).
    imported: HashMap<(usize, usize, TensorId), Ref>,
    /// The literals' names, by tensor.
    literal_names: HashMap<TensorId, String>,
    /// The attached tensors, by name.
    pub(crate) literals: BTreeMap<String, TensorData>,
    /// Names saved so far.
    pub(crate) saved: BTreeSet<String>,
    /// The last source location of each invoke of the running trace.
    at: Vec<Option<Location>>,
    pub(crate) problem: Option<Problem>,
}

impl Tape {
    /// Records the first problem (later ones follow from it).
    pub(crate) fn fail(&mut self, what: String) {
        if self.problem.is_none() {
            let at = self.current().and_then(|(_, i)| self.at.get(i).cloned().flatten());
            self.problem = Some(Problem { what, at });
        }
    }

    /// The trace and invoke whose body runs now.
    pub(crate) fn current(&self) -> Option<(usize, usize)> {
        Some((self.trace?, self.body?))
    }

    /// A trace starts: its invokes get the reported inputs.
    pub(crate) fn start_trace(&mut self, edits: usize, invokes: usize) {
        let inputs = std::mem::take(&mut self.inputs);
        if edits > 0 {
            self.fail("a persistent edit (`model.edit(..)`) is applied: record its body as part of the trace".into());
        }
        if inputs.len() != invokes {
            self.fail(format!(
                "the trace's inputs are not recordable: {} invokes, {} prompts reported (only a \
                 `LanguageModel`'s prompts, one text or token list per invoke, are)",
                invokes,
                inputs.len()
            ));
        }
        let mut list = Vec::with_capacity(invokes);
        for input in inputs {
            match input {
                Ok(input) => list.push(Invoke { input, nodes: Vec::new() }),
                Err(what) => {
                    self.fail(format!("an invoke's input is not recordable: {what}"));
                    list.push(Invoke { input: None, nodes: Vec::new() });
                }
            }
        }
        list.resize_with(invokes, || Invoke { input: None, nodes: Vec::new() });
        self.traces.push(Trace { invokes: list, generate: None::<Generate> });
        self.trace = Some(self.traces.len() - 1);
        self.edits = edits;
        self.at = vec![None; invokes];
    }

    /// The body `body` (edits first) is polled, or (`None`) no body is.
    pub(crate) fn polling(&mut self, body: Option<usize>) {
        self.body = body.and_then(|b| b.checked_sub(self.edits));
        self.paused = None;
    }

    /// Sets the source location of the running invoke's next nodes.
    pub(crate) fn locate(&mut self, at: Location) {
        if let Some((_, i)) = self.current() {
            self.at[i] = Some(at);
        }
    }

    /// Appends `op` to the running invoke; its reference.
    pub(crate) fn push(&mut self, op: Op) -> Option<Ref> {
        let (t, i) = self.current()?;
        let at = self.at[i].clone();
        let nodes = &mut self.traces[t].invokes[i].nodes;
        nodes.push(Node { op, at });
        Some((nodes.len() - 1) as Ref)
    }

    /// Appends `op`, whose value is the tensor `out`.
    pub(crate) fn define(&mut self, op: Op, out: TensorId) -> Option<Ref> {
        let r = self.push(op)?;
        let (trace, invoke) = self.current()?;
        self.origins.insert(out, Origin { trace, invoke, node: r });
        Some(r)
    }

    /// The running invoke's reference to tensor `id`: its own node, or a new node that brings
    /// the value in (another invoke's, an earlier trace's, a constant, a parameter).
    pub(crate) fn resolve(&mut self, id: TensorId, constants: &HashMap<TensorId, TensorData>) -> Result<Ref, String> {
        let (t, i) = self.current().ok_or("no body is running")?;
        if let Some(&r) = self.imported.get(&(t, i, id)) {
            return Ok(r);
        }
        let op = match self.origins.get(&id).copied() {
            Some(o) if (o.trace, o.invoke) == (t, i) => return Ok(o.node),
            Some(o) if o.trace == t => Op::Shared { invoke: o.invoke as u32, node: o.node },
            Some(o) => Op::Saved { name: self.session_save(o) },
            None => {
                if let Some(path) = self.params.get(&id) {
                    Op::Param { path: path.clone() }
                } else if let Some(data) = constants.get(&id) {
                    Op::Tensor { name: self.literal(id, data) }
                } else {
                    return Err("a tensor the body did not make, read from a site, or take from a \
                                constant or a model parameter (an intermediate value of the \
                                model's own forward pass?)"
                        .into());
                }
            }
        };
        let r = self.push(op).ok_or("no body is running")?;
        self.imported.insert((t, i, id), r);
        Ok(r)
    }

    /// The name under which an earlier trace saves the value at `origin` for a later one.
    fn session_save(&mut self, origin: Origin) -> String {
        let name = format!("session.{}.{}.{}", origin.trace, origin.invoke, origin.node);
        if self.saved.insert(name.clone()) {
            let nodes = &mut self.traces[origin.trace].invokes[origin.invoke].nodes;
            nodes.push(Node::new(Op::Save { name: name.clone(), value: origin.node, cast: None }));
        }
        name
    }

    /// The name of the attached tensor holding `data` (the tensor `id`).
    fn literal(&mut self, id: TensorId, data: &TensorData) -> String {
        if let Some(name) = self.literal_names.get(&id) {
            return name.clone();
        }
        let name = format!("tensor{}", self.literals.len());
        self.literals.insert(name.clone(), data.clone());
        self.literal_names.insert(id, name.clone());
        name
    }

    /// A tensor operation burn registered on this thread.
    pub(crate) fn operation(&mut self, op: &OperationIr, constants: &mut HashMap<TensorId, TensorData>) {
        if self.current().is_none() || self.problem.is_some() || matches!(op, OperationIr::Drop(_)) {
            return;
        }
        if let Err(what) = lower::lower(self, op, constants) {
            self.fail(what);
        }
    }

    /// The host asks for the values of `tensor`: refused inside a body (the value does not exist
    /// until the program runs); the problem, if so.
    pub(crate) fn host_read(&mut self, tensor: &TensorIr) -> Option<String> {
        self.current()?;
        let what = format!(
            "value-dependent host code cannot run remotely: the body reads the values of a \
             {:?} tensor of shape {:?} on the host (`into_data`, `into_scalar`, ...); keep the \
             computation in tensor operations (e.g. `mask_where` instead of a branch)",
            tensor.dtype,
            tensor.shape.as_slice()
        );
        self.fail(what.clone());
        Some(what)
    }

    /// Appends a site node (a read, write, skip) with the site's source location.
    pub(crate) fn site_node(&mut self, op: Op, out: Option<TensorId>, at: Location) -> Option<Ref> {
        self.locate(at);
        match out {
            Some(id) => self.define(op, id),
            None => self.push(op),
        }
    }
}
