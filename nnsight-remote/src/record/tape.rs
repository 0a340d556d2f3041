//! The tape of one recording: the program being built, and where each tensor the bodies touch
//! comes from — a site the body read, a node it computed, a constant, a model parameter.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use burn_backend::TensorData;
use burn_ir::{OperationIr, TensorId, TensorIr};

use super::lower;
use crate::ir::{Generate, Input, Invoke, Location, Node, Op, Ref, Trace};

/// While recording, a node is named by its index in its invoke's list, or — inside the body of
/// the standing edit at index `e` — by `BODY | e << 16 | k` for its `k`-th body node: a body
/// grows at each application, after later nodes of the invoke were appended, so the IR's
/// numbering (an edit's body counts after it) is given only when the recording ends
/// ([`prune`](super::prune)).
pub(crate) const BODY: Ref = 1 << 31;

/// The recording name of node `k` of the body of the edit at index `edit`.
pub(crate) fn body_ref(edit: Ref, k: usize) -> Option<Ref> {
    (edit < 1 << 15 && k < 1 << 16).then_some(BODY | edit << 16 | k as Ref)
}

/// The edit and body index of a recording name made by [`body_ref`], if it is one.
pub(crate) fn body_index(r: Ref) -> Option<(Ref, usize)> {
    (r & BODY != 0).then_some(((r & !BODY) >> 16, (r & 0xffff) as usize))
}

/// Where a tensor a body uses comes from: node `node` of invoke `invoke` of trace `trace` —
/// inside the body of the standing edit at node `scope`, if it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) trace: usize,
    pub(crate) invoke: usize,
    pub(crate) node: Ref,
    pub(crate) scope: Option<Ref>,
}

/// A call of an instrumented module of the model, made by a body: its path, its arguments'
/// references, and the body to resume when it returns.
pub(crate) struct PendingCall {
    pub(crate) module: String,
    pub(crate) args: Vec<Ref>,
    pub(crate) body: Option<usize>,
}

/// A standing edit a body made: the `edit` node of an invoke, and whether its closure has been
/// recorded (at its first application; later ones are compared with it).
pub(crate) struct StandingEdit {
    pub(crate) trace: usize,
    pub(crate) invoke: usize,
    pub(crate) edit: Ref,
    pub(crate) applied: bool,
    /// Where the body made it: the location of the body's nodes.
    pub(crate) at: Option<Location>,
}

/// Where nodes go while a standing edit's closure runs: the body of the `edit` node, or (for a
/// later application) a scratch list compared with it.
pub(crate) struct EditCursor {
    pub(crate) edit: Ref,
    pub(crate) scratch: Option<Vec<Node>>,
    /// The body polled when the application started (none: it runs in the forward pass).
    pub(crate) resume: Option<usize>,
    /// The location of the edit's nodes.
    pub(crate) at: Option<Location>,
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
    /// The model's modules' paths, by address and type.
    pub(crate) modules: HashMap<(usize, &'static str), String>,
    /// The calls of instrumented modules under way: `Some` for one a body made (its path, its
    /// arguments' references, and the body to resume), `None` for a nested or foreign one.
    pub(crate) calls: Vec<Option<PendingCall>>,
    /// The standing edits made, by the engine's index.
    pub(crate) standing: HashMap<usize, StandingEdit>,
    /// The standing edit whose closure runs now.
    pub(crate) cursor: Option<EditCursor>,
    /// The generation options of the next trace.
    pub(crate) generate: Option<Generate>,
    /// Operations run between traces, by output: lowered where a body uses their value.
    pub(crate) outside: HashMap<TensorId, OperationIr>,
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
            self.fail(
                "a persistent edit (`model.edit(..)`) is applied: record its body as part of the trace"
                    .into(),
            );
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
        let generate = self.generate.take();
        self.traces.push(Trace { invokes: list, generate });
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

    /// The list new nodes go to — the running invoke's, or a standing edit's body — and the edit
    /// (`None`: the invoke's own list).
    fn nodes_mut(&mut self) -> Option<(&mut Vec<Node>, Option<Ref>)> {
        let (t, i) = self.current()?;
        let nodes = &mut self.traces[t].invokes[i].nodes;
        Some(match &mut self.cursor {
            None => (nodes, None),
            Some(EditCursor { edit, scratch: Some(scratch), .. }) => (scratch, Some(*edit)),
            Some(EditCursor { edit, scratch: None, .. }) => match &mut nodes.get_mut(*edit as usize)?.op {
                Op::Edit { body, .. } => (body, Some(*edit)),
                _ => return None,
            },
        })
    }

    /// The recording name of node `k` of a list (see [`nodes_mut`](Self::nodes_mut)).
    fn name(edit: Option<Ref>, k: usize) -> Option<Ref> {
        match edit {
            None => Ref::try_from(k).ok().filter(|&r| r < 1 << 15),
            Some(edit) => body_ref(edit, k),
        }
    }

    /// The operation of node `r` as the nodes being appended see it (a standing edit's body
    /// numbers its nodes after the edit).
    fn op_at(&self, r: Ref) -> Option<&Op> {
        let (t, i) = self.current()?;
        let nodes = &self.traces[t].invokes[i].nodes;
        match body_index(r) {
            Some((edit, k)) => match &self.cursor {
                Some(EditCursor { edit: e, scratch: Some(scratch), .. }) if *e == edit => {
                    scratch.get(k).map(|n| &n.op)
                }
                _ => match &nodes.get(edit as usize)?.op {
                    Op::Edit { body, .. } => body.get(k).map(|n| &n.op),
                    _ => None,
                },
            },
            None => nodes.get(r as usize).map(|n| &n.op),
        }
    }

    /// Appends `op` to the running invoke (or standing edit); its reference.
    pub(crate) fn push(&mut self, op: Op) -> Option<Ref> {
        let (_, i) = self.current()?;
        let at = match &self.cursor {
            Some(cursor) => cursor.at.clone(),
            None => self.at[i].clone(),
        };
        let (nodes, edit) = self.nodes_mut()?;
        let Some(r) = Self::name(edit, nodes.len()) else {
            self.fail("more than 32768 nodes in one invoke (or 65536 in one standing edit)".into());
            return None;
        };
        nodes.push(Node { op, at });
        Some(r)
    }

    /// The reference of the last node appended to the running invoke (or standing edit).
    pub(crate) fn last(&mut self) -> Option<Ref> {
        let (nodes, edit) = self.nodes_mut()?;
        let k = nodes.len().checked_sub(1)?;
        Self::name(edit, k)
    }

    /// Appends `op`, whose value is the tensor `out` — or the fused operation it completes (see
    /// [`fuse`](super::fuse)).
    pub(crate) fn define(&mut self, op: Op, out: TensorId) -> Option<Ref> {
        let op = super::fuse::fuse(&|r| self.op_at(r), &op).unwrap_or(op);
        self.define_as(op, out)
    }

    /// Appends `op` as it is, its value the tensor `out`.
    pub(crate) fn define_as(&mut self, op: Op, out: TensorId) -> Option<Ref> {
        let r = self.push(op)?;
        let (trace, invoke) = self.current()?;
        let scope = self.cursor.as_ref().map(|c| c.edit);
        self.origins.insert(out, Origin { trace, invoke, node: r, scope });
        Some(r)
    }

    /// The running invoke's reference to tensor `id`: its own node, or a new node that brings
    /// the value in (another invoke's, an earlier trace's, a constant, a parameter).
    pub(crate) fn resolve(
        &mut self,
        id: TensorId,
        constants: &mut HashMap<TensorId, TensorData>,
    ) -> Result<Ref, String> {
        let (t, i) = self.current().ok_or("no body is running")?;
        let scope = self.cursor.as_ref().map(|c| c.edit);
        if scope.is_none()
            && let Some(&r) = self.imported.get(&(t, i, id))
        {
            return Ok(r);
        }
        let op = match self.origins.get(&id).copied() {
            Some(o) if (o.trace, o.invoke) == (t, i) => {
                return match (o.scope, scope) {
                    (None, None) => Ok(o.node),
                    (Some(a), Some(b)) if a == b => Ok(o.node),
                    (None, Some(edit)) if o.node < edit => Ok(o.node),
                    (None, Some(_)) => {
                        Err("a value the body computed after making the standing edit, inside its closure"
                            .into())
                    }
                    (Some(_), _) => {
                        Err("a value computed inside a standing edit's closure, outside it".into())
                    }
                };
            }
            Some(o) if o.scope.is_some() => {
                return Err("a value computed inside another invoke's standing edit".into());
            }
            Some(o) if o.trace == t => Op::Shared { invoke: o.invoke as u32, node: o.node },
            Some(o) => Op::Saved { name: self.session_save(o) },
            None => {
                if let Some(path) = self.params.get(&id) {
                    Op::Param { path: path.clone() }
                } else if let Some(data) = constants.get(&id) {
                    Op::Tensor { name: self.literal(id, data) }
                } else if let Some(op) = self.outside.get(&id).cloned() {
                    // An operation run between traces (on constants, parameters or earlier
                    // values): recorded where a body first uses its value — in a standing
                    // edit's body, at each of its visits.
                    if scope.is_none() {
                        self.outside.remove(&id);
                    }
                    lower::lower(self, &op, constants)?;
                    return self.resolve(id, constants);
                } else {
                    return Err("a tensor the body did not make, read from a site, or take from a \
                                constant or a model parameter (an intermediate value of the \
                                model's own forward pass?)"
                        .into());
                }
            }
        };
        let r = self.push(op).ok_or("no body is running")?;
        if scope.is_none() {
            self.imported.insert((t, i, id), r);
        }
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
        // The same data attached once (a constant a standing edit's closure makes at every step).
        let same = |d: &TensorData| {
            d.shape == data.shape && d.dtype == data.dtype && d.as_bytes() == data.as_bytes()
        };
        if let Some((name, _)) = self.literals.iter().find(|(_, d)| same(d)) {
            let name = name.clone();
            self.literal_names.insert(id, name.clone());
            return name;
        }
        let name = format!("tensor{}", self.literals.len());
        self.literals.insert(name.clone(), data.clone());
        self.literal_names.insert(id, name.clone());
        name
    }

    /// A tensor operation burn registered on this thread.
    pub(crate) fn operation(&mut self, op: &OperationIr, constants: &mut HashMap<TensorId, TensorData>) {
        if self.problem.is_some() || matches!(op, OperationIr::Drop(_)) {
            return;
        }
        if self.current().is_none() {
            // Between traces (not in a forward pass): kept until a body uses the value.
            if self.trace.is_none() {
                for out in op.outputs() {
                    self.outside.insert(out.id, op.clone());
                }
            }
            return;
        }
        if let Err(what) = lower::lower(self, op, constants)
            && self.problem.is_none()
        {
            // The line that runs the operation, when a backtrace names it.
            self.fail(what);
            if let (Some(problem), Some(line)) = (&mut self.problem, super::caller::user_line()) {
                problem.at = Some(line);
            }
        }
    }

    /// The host asks for the values of `tensor`: refused inside a body (the value does not exist
    /// until the program runs); the problem, if so.
    pub(crate) fn host_read(&mut self, tensor: &TensorIr) -> Option<String> {
        self.current()?;
        let what = format!(
            "value-dependent host code cannot run remotely: the body reads the values of a \
             {:?} tensor of shape {:?} on the host (`into_data`, `into_scalar`, ...); keep the \
             computation in tensor operations (e.g. `mask_where` instead of a branch; burn's \
             `sort` and `topk_with_indices` read values on the host themselves: `argmax` does \
             not)",
            tensor.dtype,
            tensor.shape.as_slice()
        );
        if self.problem.is_none() {
            // The line that reads, when a backtrace names it; else the last site access.
            self.fail(what.clone());
            if let (Some(problem), Some(line)) = (&mut self.problem, super::caller::user_line()) {
                problem.at = Some(line);
            }
        }
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
