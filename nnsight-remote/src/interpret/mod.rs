//! Running a program: each trace's invokes become engine bodies on the model's root
//! [`DynEnvoy`], interleaved with one forward pass by the same engine as compiled bodies; sites
//! are reached by path, tensor operations run with burn on the model's backend, and what the
//! program saves comes back.
//!
//! Interpreted today: every site read and write, standing edits (`edit`: its body runs at each
//! visit of its steps), `skip`, `stop`, `call` of the modules the host offers ([`Hosted`]),
//! literals (`tensor`), values of earlier invokes (`shared`) and traces (`saved`), every tensor
//! operation of IR 1.0, `save` and `log`, on a bare model ([`run`]) or a language model, whose
//! traces may generate ([`run_language_model`]: each step is one more occurrence of every site).
//! Not yet: `call` inside an edit's body — refused before anything runs.

mod hosted;
mod language_model;
mod ops;
mod value;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use burn::prelude::*;
use nnsight::inspect::{Forward, Inspectable};
use nnsight::invoke::Concat;
use nnsight::site::{ErasedValue, Kind as SiteSide};
use nnsight::{DynEnvoy, Error, TraceExt};

pub use hosted::Hosted;
pub use language_model::{run_language_model, run_language_model_watched};
pub use value::{Kind, Value};

use crate::check::check;
use crate::diagnostic::Diagnostic;
use crate::ir::{Input, Node, Op, Program, Site, SiteKind, Steps, Trace};

/// What a program gives back: its saved values by name, and its log lines.
#[derive(Debug)]
pub struct Outcome<B: Backend> {
    /// The values of every `save`, by name (cast as the save asked).
    pub saves: BTreeMap<String, Value<B>>,
    /// The `log` lines, in the order they were made.
    pub log: Vec<String>,
}

/// Why a program did not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program breaks structural rules (see [`check`]); nothing ran.
    #[error("the program is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Diagnostic>),
    /// The program uses an operation this interpreter does not run yet; nothing ran.
    #[error("trace {trace} uses `{op}`, which this build does not interpret yet")]
    NotInterpreted {
        /// The trace.
        trace: usize,
        /// The operation's name.
        op: &'static str,
    },
    /// The program calls a module the host does not let programs call; nothing ran.
    #[error("trace {trace} calls `{module}`, which is not callable here (callable: {callable})")]
    NotHosted {
        /// The trace.
        trace: usize,
        /// The module's path.
        module: String,
        /// What is callable.
        callable: String,
    },
    /// The host's [`Watch`] stopped the program at a site (a cancelled job, a time limit).
    #[error("trace {trace} stopped: {reason}")]
    Stopped {
        /// The trace.
        trace: usize,
        /// The invoke whose site the watch refused.
        invoke: usize,
        /// The watch's reason.
        reason: String,
    },
    /// A trace failed while running (the engine's error, or a node's, naming the node).
    #[error("trace {trace} failed: {error}")]
    Trace {
        /// The trace.
        trace: usize,
        /// The invoke whose body (or standing edit) failed, when it was one of them.
        invoke: Option<usize>,
        /// What failed.
        error: Error,
    },
}

/// What a host sees of a running program, and how it stops one (a cancelled job, a wall-clock
/// limit): asked before every site access of the program — each read, write and skip, and each
/// visit of a standing edit.
pub trait Watch {
    /// Invoke `invoke` of trace `trace` has reached a site at `occurrence` (a generation's step).
    /// `Err(reason)` stops the program there: [`RunError::Stopped`].
    ///
    /// # Errors
    /// The reason to stop.
    fn site(&self, trace: usize, invoke: usize, occurrence: u32) -> Result<(), String>;

    /// Trace `trace` of `traces` has run to its end.
    fn trace_done(&self, trace: usize, traces: usize) {
        let _ = (trace, traces);
    }
}

/// Watches nothing, stops nothing.
struct Unwatched;

impl Watch for Unwatched {
    fn site(&self, _: usize, _: usize, _: u32) -> Result<(), String> {
        Ok(())
    }
}

/// What runs a trace's bodies: one batched forward pass of a bare model ([`run`]), or a language
/// model's forward pass or generation ([`run_language_model`]).
pub trait Host {
    /// Whether it runs traces with `generate`.
    fn generates(&self) -> bool;

    /// Runs `trace` with one body per invoke (`None`: the invoke has no input and sees the whole
    /// batch); their results in invoke order.
    ///
    /// # Errors
    /// The engine's, an input's, or the first failing body's error.
    fn run_trace<C, R>(&self, trace: &Trace, bodies: Vec<(Option<&Input>, C)>) -> nnsight::Result<Vec<R>>
    where
        C: for<'t> AsyncFnOnce(DynEnvoy<'t>) -> nnsight::Result<R>;
}

/// A bare `Inspectable` model with a way to make its inputs.
struct BareModel<'m, M, F> {
    model: &'m M,
    input: F,
}

impl<M, F> Host for BareModel<'_, M, F>
where
    M: Inspectable + Forward,
    M::Inputs: Concat,
    F: Fn(&Input) -> nnsight::Result<M::Inputs>,
{
    fn generates(&self) -> bool {
        false
    }

    fn run_trace<C, R>(&self, _: &Trace, bodies: Vec<(Option<&Input>, C)>) -> nnsight::Result<Vec<R>>
    where
        C: for<'t> AsyncFnOnce(DynEnvoy<'t>) -> nnsight::Result<R>,
    {
        let mut invokes = Vec::with_capacity(bodies.len());
        for (input, body) in bodies {
            invokes.push((input.map(&self.input).transpose()?, body));
        }
        Ok(self.model.tracer().invoke_inputs_dyn(invokes).run()?.0)
    }
}

/// Runs `program` on `model`: each trace is one batched forward pass of its invokes' inputs,
/// made by `input` (e.g. token ids into the model's input tensors); `tensors` are the literals
/// the program names. No module is callable (see [`run_hosted`]). The model is left as it was,
/// whatever happens.
///
/// # Errors
/// [`RunError::Invalid`], [`RunError::NotInterpreted`] or [`RunError::NotHosted`] before
/// anything runs; else the first failing trace's error.
pub fn run<B, M>(
    model: &M,
    program: &Program,
    tensors: &BTreeMap<String, Value<B>>,
    input: impl Fn(&Input) -> nnsight::Result<M::Inputs>,
) -> Result<Outcome<B>, RunError>
where
    B: Backend,
    M: Inspectable + Forward,
    M::Inputs: Concat,
{
    run_hosted(model, program, tensors, input, &Hosted::new())
}

/// [`run`], with the modules `hosted` offers callable by the program's `call`s.
///
/// # Errors
/// As [`run`].
pub fn run_hosted<B, M>(
    model: &M,
    program: &Program,
    tensors: &BTreeMap<String, Value<B>>,
    input: impl Fn(&Input) -> nnsight::Result<M::Inputs>,
    hosted: &Hosted<'_, B>,
) -> Result<Outcome<B>, RunError>
where
    B: Backend,
    M: Inspectable + Forward,
    M::Inputs: Concat,
{
    run_on(&BareModel { model, input }, program, tensors, hosted)
}

/// Runs `program` on `host` (see [`run`]).
///
/// # Errors
/// As [`run`].
pub fn run_on<B: Backend, H: Host>(
    host: &H,
    program: &Program,
    tensors: &BTreeMap<String, Value<B>>,
    hosted: &Hosted<'_, B>,
) -> Result<Outcome<B>, RunError> {
    run_watched(host, program, tensors, hosted, Rc::new(Unwatched))
}

/// [`run_on`], asking `watch` before every site access whether to go on.
///
/// # Errors
/// As [`run`]; [`RunError::Stopped`] when `watch` stops it.
pub fn run_watched<B: Backend, H: Host>(
    host: &H,
    program: &Program,
    tensors: &BTreeMap<String, Value<B>>,
    hosted: &Hosted<'_, B>,
    watch: Rc<dyn Watch>,
) -> Result<Outcome<B>, RunError> {
    let diagnostics = check(program);
    if !diagnostics.is_empty() {
        return Err(RunError::Invalid(diagnostics));
    }
    for (t, trace) in program.traces.iter().enumerate() {
        if trace.generate.is_some() && !host.generates() {
            return Err(RunError::NotInterpreted {
                trace: t,
                op: "generate (on a model that does not generate)",
            });
        }
        if let Some(op) = not_interpreted(trace) {
            return Err(RunError::NotInterpreted { trace: t, op });
        }
        let calls = trace.invokes.iter().flat_map(|i| &i.nodes).filter_map(|n| match &n.op {
            Op::Call { module, .. } => Some(module),
            _ => None,
        });
        for module in calls {
            if !hosted.offers(module) {
                return Err(RunError::NotHosted {
                    trace: t,
                    module: module.clone(),
                    callable: hosted.paths().join(", "),
                });
            }
        }
        let params = trace.invokes.iter().flat_map(|i| &i.nodes).filter_map(|n| match &n.op {
            Op::Param { path } => Some(path),
            _ => None,
        });
        for path in params {
            if hosted.param(path).is_none() {
                return Err(RunError::NotHosted {
                    trace: t,
                    module: path.clone(),
                    callable: format!("{} parameters offered", hosted.param_count()),
                });
            }
        }
    }
    let mut outcome = Outcome { saves: BTreeMap::new(), log: Vec::new() };
    let stopped = Rc::new(RefCell::new(None));
    let failed = Rc::new(Cell::new(None));
    for (t, trace) in program.traces.iter().enumerate() {
        let context = Context {
            watch: watch.clone(),
            stopped: stopped.clone(),
            failed: failed.clone(),
            trace: t,
            invokes: &trace.invokes,
            tensors,
            hosted,
            saved: &outcome.saves,
            values: RefCell::new(vec![Vec::new(); trace.invokes.len()]),
            saves: RefCell::new(BTreeMap::new()),
            log: RefCell::new(Vec::new()),
        };
        let context = &context;
        let bodies = (0..trace.invokes.len())
            .map(|i| {
                (trace.invokes[i].input.as_ref(), async move |root: DynEnvoy<'_>| {
                    context.invoke(root, i).await
                })
            })
            .collect();
        let ran = host.run_trace(trace, bodies);
        if let Some((invoke, reason)) = stopped.take() {
            return Err(RunError::Stopped { trace: t, invoke, reason });
        }
        ran.map_err(|error| RunError::Trace { trace: t, invoke: failed.take(), error })?;
        let (saves, log) = (context.saves.take(), context.log.take());
        outcome.saves.extend(saves);
        outcome.log.extend(log);
        watch.trace_done(t, program.traces.len());
    }
    Ok(outcome)
}

/// The first operation of `trace` this build does not interpret, if any.
fn not_interpreted(trace: &Trace) -> Option<&'static str> {
    let in_bodies = trace.invokes.iter().flat_map(|i| &i.nodes).filter_map(|n| match &n.op {
        Op::Edit { body, .. } => Some(body),
        _ => None,
    });
    in_bodies.flatten().find_map(|n| matches!(n.op, Op::Call { .. }).then_some("call (in an edit's body)"))
}

/// What the bodies of one trace share.
struct Context<'p, B: Backend> {
    watch: Rc<dyn Watch>,
    /// Which invoke the watch stopped, and why, once it has.
    stopped: Rc<RefCell<Option<(usize, String)>>>,
    /// The first invoke whose body or standing edit failed.
    failed: Rc<Cell<Option<usize>>>,
    trace: usize,
    invokes: &'p [crate::ir::Invoke],
    tensors: &'p BTreeMap<String, Value<B>>,
    hosted: &'p Hosted<'p, B>,
    /// What earlier traces saved.
    saved: &'p BTreeMap<String, Value<B>>,
    /// Each invoke's node values so far (`None`: no value).
    values: RefCell<Vec<Vec<Option<Value<B>>>>>,
    saves: RefCell<BTreeMap<String, Value<B>>>,
    log: RefCell<Vec<String>>,
}

impl<B: Backend> Context<'_, B> {
    /// Asks the watch whether invoke `i` goes on to a site at `occurrence`.
    fn ask(&self, i: usize, occurrence: u32) -> Result<(), NodeError> {
        ask(&*self.watch, &self.stopped, self.trace, i, occurrence)
    }

    /// What asks the watch, at a site reached at `occurrence`, whether to go on (an engine
    /// error ends the body; the reason is kept for the outcome).
    fn asking(&self, i: usize, occurrence: u32) -> impl Fn() -> nnsight::Result<()> + 'static {
        let (watch, stopped, trace) = (self.watch.clone(), self.stopped.clone(), self.trace);
        move || match ask(&*watch, &stopped, trace, i, occurrence) {
            Err(NodeError::Op(problem)) => Err(Error::Input { problem }),
            _ => Ok(()),
        }
    }

    /// Runs invoke `i`'s nodes in order.
    async fn invoke(&self, root: DynEnvoy<'_>, i: usize) -> nnsight::Result<()> {
        for node in &self.invokes[i].nodes {
            let id = self.values.borrow()[i].len() as u32;
            let value = self.node(root, i, id, node).await.map_err(|e| {
                if self.failed.get().is_none() {
                    self.failed.set(Some(i));
                }
                self.at(i, id, node, e)
            })?;
            let mut values = self.values.borrow_mut();
            values[i].push(value);
            // An edit's body nodes are numbered after it (their values live in the edit's steps).
            if let Op::Edit { body, .. } = &node.op {
                values[i].extend(std::iter::repeat_n(None, body.len()));
            }
        }
        Ok(())
    }

    /// The error of node `n` of invoke `i`, naming it (engine errors pass through as they are).
    fn at(&self, i: usize, n: u32, node: &Node, error: NodeError) -> Error {
        match error {
            NodeError::Engine(error) => error,
            NodeError::Op(problem) => {
                let at = node.at.as_ref().map(|l| format!(" ({l})")).unwrap_or_default();
                let name = format!("`{}`", node.op.name());
                // Most operations' messages start with their name; the others get it here.
                let problem = if problem.starts_with(&name) { problem } else { format!("{name}: {problem}") };
                Error::Input { problem: format!("trace {} invoke {i} node {n}{at}: {problem}", self.trace) }
            }
        }
    }

    /// The value of node `r` of invoke `i` (checked to exist by `check`).
    fn get(&self, i: usize, r: u32) -> Result<Value<B>, NodeError> {
        let values = self.values.borrow();
        match values[i].get(r as usize) {
            Some(Some(value)) => Ok(value.clone()),
            Some(None) => Err(NodeError::Op(format!("node {r} has no value"))),
            None => Err(NodeError::Op(format!(
                "node {r} of invoke {i} has not run yet (an invoke's value is there once the forward pass has \
                 reached the site it comes from: use it after reading a site that comes later)"
            ))),
        }
    }

    /// A constant node's value (a literal, a shared or saved value), resolved once.
    fn constant(&self, op: &Op) -> Result<Option<Value<B>>, NodeError> {
        Ok(match op {
            Op::Tensor { name } => match self.tensors.get(name) {
                Some(t) => Some(t.clone()),
                None => return Err(NodeError::Op(format!("no tensor `{name}` is attached to the program"))),
            },
            Op::Saved { name } => match self.saved.get(name) {
                Some(v) => Some(v.clone()),
                None => return Err(NodeError::Op(format!("no earlier trace saved `{name}`"))),
            },
            Op::Shared { invoke, node } => Some(self.get(*invoke as usize, *node)?),
            Op::Param { path } => match self.hosted.param(path) {
                Some(v) => Some(v),
                None => return Err(NodeError::Op(format!("the host offers no parameter `{path}`"))),
            },
            _ => None,
        })
    }

    /// Registers the standing edit of node `n` of invoke `i`: `body` runs at each step.
    fn edit(
        &self,
        root: DynEnvoy<'_>,
        i: usize,
        n: u32,
        site: &Site,
        steps: &Steps,
        body: &[Node],
    ) -> Result<(), NodeError> {
        let (module, side, element) = locate(root, site)?;
        let base = n + 1;
        let mut outer = BTreeMap::new();
        let mut constants = Vec::with_capacity(body.len());
        for node in body {
            for r in node.op.inputs().into_iter().filter(|&r| r < base) {
                outer.insert(r, self.get(i, r)?);
            }
            constants.push(self.constant(&node.op)?);
        }
        let edit = Standing {
            watch: self.watch.clone(),
            stopped: self.stopped.clone(),
            failed: self.failed.clone(),
            visit: Rc::new(Cell::new(0)),
            trace: self.trace,
            invoke: i,
            node: n,
            base,
            body: body.to_vec(),
            outer,
            constants,
            element,
        };
        // The visits as (first, one past the last).
        let visits: Vec<(u32, u32)> = match steps {
            Steps::All => vec![(0, u32::MAX)],
            Steps::Range { start, end } => vec![(*start, end.unwrap_or(u32::MAX))],
            Steps::List(list) => list.iter().map(|&s| (s, s.saturating_add(1))).collect(),
        };
        for (first, end) in visits {
            let range = first..end;
            let mut edit = edit.clone();
            edit.visit = Rc::new(Cell::new(first));
            module
                .erased(side, 0)
                .steps(range, move |value: &mut dyn ErasedValue, writer| edit.apply(value, writer))?;
        }
        Ok(())
    }

    async fn node(
        &self,
        root: DynEnvoy<'_>,
        i: usize,
        n: u32,
        node: &Node,
    ) -> Result<Option<Value<B>>, NodeError> {
        let value = |r: u32| self.get(i, r);
        if let Some(constant) = self.constant(&node.op)? {
            return Ok(Some(constant));
        }
        // Reads and writes ask the watch when their site is reached (in their visit); a skip
        // asks before it waits.
        if let Op::Skip { occurrence, .. } = &node.op {
            self.ask(i, *occurrence)?;
        }
        match &node.op {
            Op::Edit { site, steps, body } => {
                self.edit(root, i, n, site, steps, body)?;
                return Ok(None);
            }
            Op::Call { module, args } => {
                let args = args.iter().map(|r| value(*r)).collect::<Result<Vec<_>, _>>()?;
                return Ok(Some(self.hosted.call(module, args)?));
            }
            Op::Skip { module, occurrence, value: r } => {
                root.module(module)?.skip_erased(value(*r)?.into_erased()).at(*occurrence).await?;
                return Ok(None);
            }
            _ => {}
        }
        if let Some(computed) = compute(&node.op, &value)? {
            return Ok(Some(computed));
        }
        match &node.op {
            Op::Read { site } => {
                let (module, side, element) = locate(root, site)?;
                let at = self.asking(i, site.occurrence);
                let read = module
                    .erased(side, site.occurrence)
                    .visit(false, move |value: &mut dyn ErasedValue, _| {
                        at()?;
                        Ok(tensor_of(value, element))
                    })
                    .await?;
                Ok(Some(read.map_err(NodeError::Op)?))
            }
            Op::Write { site, value: r } => {
                let (module, side, element) = locate(root, site)?;
                let new = value(*r)?;
                let at = self.asking(i, site.occurrence);
                module
                    .erased(side, site.occurrence)
                    .visit(true, move |value: &mut dyn ErasedValue, writer| {
                        at()?;
                        let slot = match element {
                            Some(e) => value.element_mut(e).ok_or_else(|| Error::Input {
                                problem: format!("the call has no argument {e}"),
                            })?,
                            None => value,
                        };
                        writer.assign(slot, new.into_erased())
                    })
                    .await?;
                Ok(None)
            }
            Op::Stop => {
                root.stop()?;
                Ok(None)
            }
            Op::Save { name, value: r, cast } => {
                let mut saved = value(*r)?;
                if let Some(dtype) = cast {
                    saved = ops::cast(saved, *dtype)?;
                }
                self.saves.borrow_mut().insert(name.clone(), saved);
                Ok(None)
            }
            Op::Log { label, value: r } => {
                let v = value(*r)?;
                self.log.borrow_mut().push(format!("{label}: {}", v.describe()));
                Ok(None)
            }
            _ => Err(NodeError::Op(format!("`{}` is not interpreted here", node.op.name()))),
        }
    }
}

/// Asks `watch` whether invoke `invoke` of trace `trace` goes on to a site at `occurrence`; a refusal is kept in
/// `stopped` (the program's outcome) and ends the body.
fn ask(
    watch: &dyn Watch,
    stopped: &RefCell<Option<(usize, String)>>,
    trace: usize,
    invoke: usize,
    occurrence: u32,
) -> Result<(), NodeError> {
    watch.site(trace, invoke, occurrence).map_err(|reason| {
        let problem = format!("stopped: {reason}");
        stopped.borrow_mut().get_or_insert((invoke, reason));
        NodeError::Op(problem)
    })
}

/// The error of one node: the engine's (passed on), or the operation's (named with the node).
enum NodeError {
    Engine(Error),
    Op(String),
}

impl From<Error> for NodeError {
    fn from(error: Error) -> Self {
        NodeError::Engine(error)
    }
}

impl From<String> for NodeError {
    fn from(problem: String) -> Self {
        NodeError::Op(problem)
    }
}

/// The module of a site, which side of its call, and which argument (for inputs).
fn locate<'t>(root: DynEnvoy<'t>, site: &Site) -> Result<(DynEnvoy<'t>, SiteSide, Option<usize>), NodeError> {
    let module = root.module(&site.path)?;
    Ok(match site.kind {
        SiteKind::Output => (module, SiteSide::Output, None),
        SiteKind::Input(i) => (module, SiteSide::Input, Some(i as usize)),
    })
}

/// The tensor of a site's value (argument `element` of an input), if it is one the interpreter
/// holds.
fn tensor_of<B: Backend>(value: &mut dyn ErasedValue, element: Option<usize>) -> Result<Value<B>, String> {
    let value = match element {
        Some(e) => value.element_mut(e).ok_or_else(|| format!("the call has no argument {e}"))?,
        None => value,
    };
    let name = value.type_name();
    Value::from_erased(value)
        .ok_or_else(|| format!("the site's value is a `{name}`, not a tensor of rank 1 to 4"))
}

/// The value of a tensor operation, from the values it uses; `None` for other operations.
fn compute<B: Backend>(
    op: &Op,
    value: &dyn Fn(u32) -> Result<Value<B>, NodeError>,
) -> Result<Option<Value<B>>, NodeError> {
    Ok(match op {
        Op::Unary { fun, x } => Some(ops::unary(*fun, value(*x)?)?),
        Op::Binary { fun, lhs, rhs } => Some(ops::binary(*fun, value(*lhs)?, value(*rhs)?)?),
        Op::BinaryScalar { fun, x, scalar } => Some(ops::binary_scalar(*fun, value(*x)?, scalar.0)?),
        Op::Compare { fun, lhs, rhs } => Some(ops::compare(*fun, value(*lhs)?, value(*rhs)?)?),
        Op::CompareScalar { fun, x, scalar } => Some(ops::compare_scalar(*fun, value(*x)?, scalar.0)?),
        Op::Where { mask, value: v, otherwise } => {
            Some(ops::select_where(value(*mask)?, value(*v)?, value(*otherwise)?)?)
        }
        Op::Reduce { fun, x, dim } => Some(ops::reduce(*fun, value(*x)?, *dim)?),
        Op::Softmax { x, dim } => Some(ops::softmax(value(*x)?, *dim, false)?),
        Op::LogSoftmax { x, dim } => Some(ops::softmax(value(*x)?, *dim, true)?),
        Op::Matmul { lhs, rhs } => Some(ops::matmul(value(*lhs)?, value(*rhs)?)?),
        Op::Reshape { x, shape } => Some(ops::reshape(value(*x)?, shape)?),
        Op::Permute { x, dims } => Some(ops::permute(value(*x)?, dims)?),
        Op::Transpose { x, dim0, dim1 } => Some(ops::transpose(value(*x)?, *dim0, *dim1)?),
        Op::Slice { x, ranges } => Some(ops::slice(value(*x)?, ranges)?),
        Op::SliceAssign { x, ranges, value: v } => Some(ops::slice_assign(value(*x)?, ranges, value(*v)?)?),
        Op::IndexSelect { x, dim, indices } => Some(ops::index_select(value(*x)?, *dim, value(*indices)?)?),
        Op::Cat { xs, dim } => {
            Some(ops::join(xs.iter().map(|r| value(*r)).collect::<Result<_, _>>()?, *dim, false)?)
        }
        Op::Stack { xs, dim } => {
            Some(ops::join(xs.iter().map(|r| value(*r)).collect::<Result<_, _>>()?, *dim, true)?)
        }
        Op::Cast { x, dtype } => Some(ops::cast(value(*x)?, *dtype)?),
        Op::TopK { x, k, dim, part } => Some(ops::top_k(value(*x)?, *k, *dim, *part)?),
        Op::FullLike { x, value: fill } => Some(ops::full_like(&value(*x)?, fill.0)?),
        Op::Linear { x, weight, bias } => {
            let bias = bias.map(value).transpose()?;
            Some(ops::linear(value(*x)?, value(*weight)?, bias)?)
        }
        Op::Expand { x, shape } => Some(ops::expand(value(*x)?, shape)?),
        Op::LayerNorm { x, gamma, beta, epsilon } => {
            let beta = beta.map(value).transpose()?;
            Some(ops::layer_norm(value(*x)?, value(*gamma)?, beta, epsilon.0)?)
        }
        _ => None,
    })
}

/// A standing edit's body with what it uses from before it, run at each step.
#[derive(Clone)]
struct Standing<B: Backend> {
    watch: Rc<dyn Watch>,
    stopped: Rc<RefCell<Option<(usize, String)>>>,
    failed: Rc<Cell<Option<usize>>>,
    /// The step of the next visit.
    visit: Rc<Cell<u32>>,
    trace: usize,
    invoke: usize,
    node: u32,
    /// The number of the body's first node.
    base: u32,
    body: Vec<Node>,
    /// The values of nodes before the edit that the body uses.
    outer: BTreeMap<u32, Value<B>>,
    /// The body's constant nodes, resolved when the edit was made.
    constants: Vec<Option<Value<B>>>,
    element: Option<usize>,
}

impl<B: Backend> Standing<B> {
    fn apply(&self, value: &mut dyn ErasedValue, writer: nnsight::site::Writer<'_>) -> nnsight::Result<()> {
        let applied = self.apply_once(value, writer);
        if applied.is_err() && self.failed.get().is_none() {
            self.failed.set(Some(self.invoke));
        }
        applied
    }

    fn apply_once(
        &self,
        value: &mut dyn ErasedValue,
        writer: nnsight::site::Writer<'_>,
    ) -> nnsight::Result<()> {
        let fail = |problem: String| Error::Input {
            problem: format!(
                "trace {} invoke {} node {} `edit`: {problem}",
                self.trace, self.invoke, self.node
            ),
        };
        let step = self.visit.replace(self.visit.get().saturating_add(1));
        if let Err(NodeError::Op(problem)) = ask(&*self.watch, &self.stopped, self.trace, self.invoke, step) {
            return Err(fail(problem));
        }
        let slot = match self.element {
            Some(e) => value.element_mut(e).ok_or_else(|| fail(format!("the call has no argument {e}")))?,
            None => value,
        };
        let name = slot.type_name();
        let arg = Value::<B>::from_erased(slot)
            .ok_or_else(|| fail(format!("the site's value is a `{name}`, not a tensor of rank 1 to 4")))?;
        let locals: RefCell<Vec<Value<B>>> = RefCell::new(Vec::with_capacity(self.body.len()));
        let get = |r: u32| -> Result<Value<B>, NodeError> {
            if r < self.base {
                self.outer.get(&r).cloned().ok_or_else(|| NodeError::Op(format!("node {r} has no value")))
            } else {
                locals
                    .borrow()
                    .get((r - self.base) as usize)
                    .cloned()
                    .ok_or_else(|| NodeError::Op(format!("node {r} has no value")))
            }
        };
        for (node, constant) in self.body.iter().zip(&self.constants) {
            let v = match (&node.op, constant) {
                (Op::Arg, _) => arg.clone(),
                (_, Some(c)) => c.clone(),
                (op, None) => match compute(op, &get) {
                    Ok(Some(v)) => v,
                    Ok(None) => return Err(fail(format!("`{}` cannot stand in an edit's body", op.name()))),
                    Err(NodeError::Op(problem)) => return Err(fail(problem)),
                    Err(NodeError::Engine(error)) => return Err(error),
                },
            };
            locals.borrow_mut().push(v);
        }
        let new = locals.borrow_mut().pop().ok_or_else(|| fail("the body is empty".to_owned()))?;
        writer.assign(slot, new.into_erased())
    }
}
