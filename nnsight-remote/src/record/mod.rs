//! Recording: the **unchanged** trace body becomes a [`Program`].
//!
//! Build the model on the [`Recorder`] backend (from its config: no weights are needed, nothing
//! is computed), and run the very traces you would run locally — the explicit API or `trace!` —
//! inside [`record`]:
//!
//! ```text
//! let recorded = record(lm.model(), |rec| {
//!     let h = lm.trace("The Eiffel Tower is in").run(async |m| m.transformer.h[1].output().await)?;
//!     rec.save("h1", &h)   // `?` takes the trace's errors and the recording's
//! })?;
//! recorded.intervention()?.save(dir)?;   // program.json + tensors.safetensors
//! ```
//!
//! The forward pass runs shape-only on the recorder, through the same engine, so the site order,
//! the shapes and every error of a local trace (an out-of-order access, an unknown path) are
//! there before anything is sent. Every burn operation a body runs is lowered at once to the IR
//! (burn's own description of it never leaves the process; the operations backends fuse are
//! recorded fused, see `fuse`); values the body brings in become nodes too: a tensor made
//! before the trace is an attached literal, an operation run between traces is recorded where
//! its value is used, a model parameter is a `param` node, a call of one of the model's
//! instrumented modules a `call` node, another invoke's value a `shared` node, an earlier
//! trace's value a `saved` one. Standing edits (`every`, `steps`) become `edit` nodes, skips and
//! stops their nodes, and a generation's options the trace's `generate`.
//!
//! What cannot be recorded is an error naming it, with the source line of the body's last site
//! access: reading a tensor's values on the host inside a body (value-dependent host code),
//! burn operations outside the IR's list, random numbers, a standing edit whose closure runs
//! other operations at later visits, caches, persistent edits, untyped standing edits, and
//! inputs other than a language model's prompts (one per invoke).

mod backend;
mod caller;
mod fuse;
mod lower;
mod prune;
mod scan;
mod tape;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, Location as PanicLocation};
use std::rc::Rc;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::{BasicOps, TensorData, TensorKind};
use burn_ir::TensorId;
use nnsight::observe::{ObservedInput, ObservedKind, ObservedSite, Observer};
use nnsight::site::ErasedValue;

pub use backend::{NoBridge, RecordChannel, RecordClient, RecordDevice, Recorder};
pub use scan::{Scanned, scan};

use crate::check::check;
use crate::diagnostic::Diagnostic;
use crate::interpret::Value;
use crate::intervention::Intervention;
use crate::ir::{Generate, Input, Location, Op, Program, Sampler, Site, SiteKind, Steps};
use nnsight_models::generation::{GenerateOptions, Sampling};
use tape::{Problem, Tape};

/// Why a recording gives no program.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The body does something the IR cannot stand for (see the [module docs](self)).
    #[error("cannot record the body{}: {what}", at.as_ref().map(|a| format!(" (after {a})")).unwrap_or_default())]
    NotRecordable {
        /// What, and why.
        what: String,
        /// The source location of the body's last site access before it, if any.
        at: Option<Location>,
    },
    /// A trace failed on the recorder exactly as it would locally (an out-of-order access, an
    /// unknown path, a shape mismatch): nothing is sent.
    #[error("the trace fails: {0}")]
    Trace(#[from] nnsight::Error),
    /// A recording is already running on this thread, on this device.
    #[error("a recording is already running on this thread")]
    Nested,
    /// The recorded program breaks a structural rule (a recorder bug: please report it).
    #[error("the recorded program is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Diagnostic>),
}

/// A recorded program: the IR, the tensors it names, and what the recorded closure returned.
#[derive(Debug)]
pub struct Recorded<T> {
    /// The program (traces in the order they ran: a session).
    pub program: Program,
    /// The literals the program names (`tensor` nodes), by name.
    pub tensors: BTreeMap<String, TensorData>,
    /// What the closure given to [`record`] returned (symbolic tensors: only shapes).
    pub value: T,
}

impl<T> Recorded<T> {
    /// The program and its tensors as a shareable [`Intervention`].
    ///
    /// # Errors
    /// A literal of an element type a safetensors file cannot hold.
    pub fn intervention(&self) -> Result<Intervention, Diagnostic> {
        let tensors =
            if self.tensors.is_empty() { Vec::new() } else { crate::tensors::write_data(&self.tensors)? };
        Ok(Intervention { program: self.program.clone(), tensors })
    }

    /// The literals as interpreter values on `device` (for running the program in-process).
    ///
    /// # Errors
    /// As [`tensors::read`](crate::tensors::read).
    pub fn tensors_on<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<BTreeMap<String, Value<B>>, Diagnostic> {
        if self.tensors.is_empty() {
            return Ok(BTreeMap::new());
        }
        crate::tensors::read(&crate::tensors::write_data(&self.tensors)?, device)
    }
}

/// The handle a recording closure gets: names the values the program sends back.
pub struct Recording {
    client: RecordClient,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording").finish_non_exhaustive()
    }
}

impl Recording {
    /// Sends `value` (a tensor a trace body computed or read) back under `name`: a `save` node
    /// at the end of the invoke that made it.
    ///
    /// # Errors
    /// [`RecordError::NotRecordable`] for a name saved already, or a tensor no body made (a
    /// constant, a parameter).
    pub fn save<const D: usize, K>(
        &self,
        name: &str,
        value: &Tensor<Recorder, D, K>,
    ) -> Result<(), RecordError>
    where
        K: TensorKind<Recorder> + BasicOps<Recorder>,
        K::Primitive: 'static,
    {
        let id = tensor_id(value);
        let mut state = self.client.lock();
        let not = |what: String| RecordError::NotRecordable { what, at: None };
        let tape = state
            .tapes
            .get_mut(&std::thread::current().id())
            .ok_or_else(|| not(format!("`{name}` is saved on another thread than the recording's")))?;
        if !tape.saved.insert(name.to_owned()) {
            return Err(not(format!("`{name}` is saved twice")));
        }
        let origin = tape
            .origins
            .get(&id)
            .copied()
            .filter(|o| o.scope.is_none())
            .ok_or_else(|| not(format!("`{name}` is not a value a trace body read or computed")))?;
        let nodes = &mut tape.traces[origin.trace].invokes[origin.invoke].nodes;
        nodes.push(crate::ir::Node::new(Op::Save { name: name.to_owned(), value: origin.node, cast: None }));
        Ok(())
    }
}

/// Records the traces `run` runs on `model` (built on the [`Recorder`]) as one program; `run`
/// names what comes back with [`Recording::save`]. `model`'s parameters are what bodies may use
/// as `param` nodes, named by their paths ([`parameters`]).
///
/// # Errors
/// [`RecordError::Trace`] when a trace fails (as it would locally), [`RecordError::NotRecordable`]
/// for what the IR cannot express, [`RecordError::Nested`] inside another recording.
pub fn record<M, T>(
    model: &M,
    run: impl FnOnce(&Recording) -> Result<T, RecordError>,
) -> Result<Recorded<T>, RecordError>
where
    M: Module<Recorder> + nnsight::Inspectable,
{
    let device = model.devices().into_iter().next().unwrap_or_default();
    let client = burn_router::get_client::<RecordChannel>(&device);
    let thread = std::thread::current().id();
    {
        let mut state = client.lock();
        if state.tapes.contains_key(&thread) {
            return Err(RecordError::Nested);
        }
        let mut tape = Tape::default();
        let mut names = Names::default();
        model.visit(&mut names);
        tape.params = names.ids;
        tape.modules = nnsight::inspect::Tree::of(model)
            .modules()
            .into_iter()
            .map(|(address, type_name, path)| ((address, type_name), path))
            .collect();
        state.tapes.insert(thread, tape);
    }
    let recording = Recording { client: client.clone() };
    let result = {
        let _observing = nnsight::observe::observe(Rc::new(RecordObserver { client: client.clone() }));
        std::panic::catch_unwind(AssertUnwindSafe(|| run(&recording)))
    };
    let tape = client.lock().tapes.remove(&thread).unwrap_or_default();
    if let Some(Problem { what, at }) = tape.problem {
        return Err(RecordError::NotRecordable { what, at });
    }
    let value = match result {
        Ok(value) => value?,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    if tape.traces.is_empty() {
        let what = "no trace ran inside `record`: there is nothing to send".to_owned();
        return Err(RecordError::NotRecordable { what, at: None });
    }
    let mut traces = tape.traces;
    traces.iter_mut().for_each(prune::prune);
    let program = Program::new(traces);
    let diagnostics = check(&program);
    if !diagnostics.is_empty() {
        return Err(RecordError::Invalid(diagnostics));
    }
    Ok(Recorded { program, tensors: tape.literals, value })
}

/// The IR's element type for burn's, if the IR has it.
pub fn ir_dtype(dtype: burn::tensor::DType) -> Option<crate::ir::DType> {
    lower::dtype(dtype).ok()
}

/// Every parameter of `module` with its path (`transformer.ln_f.gamma`): the names of `param`
/// nodes. The same walk names a recorder's parameters and a host's.
pub fn parameters<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, Value<B>)> {
    let mut walk = Walk { path: Vec::new(), found: Vec::new() };
    module.visit(&mut walk);
    walk.found
}

/// The path of each parameter, collected by [`parameters`].
struct Walk<B: Backend> {
    path: Vec<String>,
    found: Vec<(String, Value<B>)>,
}

impl<B: Backend> Walk<B> {
    fn here(&self) -> String {
        self.path.join(".")
    }
}

impl<B: Backend> ModuleVisitor<B> for Walk<B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value: &dyn ErasedValue = &param.val();
        if let Some(value) = Value::from_erased(value) {
            let path = self.here();
            self.found.push((path, value));
        }
    }
}

/// The recorder's parameters by tensor id.
#[derive(Default)]
struct Names {
    path: Vec<String>,
    ids: std::collections::HashMap<TensorId, String>,
}

impl ModuleVisitor<Recorder> for Names {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Recorder, D>>) {
        self.ids.insert(tensor_id(&param.val()), self.path.join("."));
    }
}

/// The id burn's router gives `tensor`.
fn tensor_id<const D: usize, K>(tensor: &Tensor<Recorder, D, K>) -> TensorId
where
    K: TensorKind<Recorder> + BasicOps<Recorder>,
    K::Primitive: 'static,
{
    use burn::tensor::TensorPrimitive;
    let any: Box<dyn std::any::Any> = Box::new(tensor.clone().into_primitive());
    match any.downcast::<TensorPrimitive<Recorder>>() {
        Ok(float) => match *float {
            TensorPrimitive::Float(t) => t.into_ir().id,
            TensorPrimitive::QFloat(t) => t.into_ir().id,
        },
        // Integer and boolean tensors are router tensors themselves.
        Err(any) => match any.downcast::<burn_router::RouterTensor<RecordClient>>() {
            Ok(t) => t.into_ir().id,
            Err(_) => TensorId::new(0),
        },
    }
}

/// The id, shape and element type of a site value that is a tensor on the recorder (of rank 1
/// to 6), if it is one.
fn erased_tensor(value: &dyn ErasedValue) -> Option<(TensorId, Vec<usize>, burn::tensor::DType)> {
    let any = value.as_any();
    macro_rules! try_ranks {
        ($($d:literal),*) => {
            $(
                if let Some(t) = any.downcast_ref::<Tensor<Recorder, $d>>() {
                    return Some((tensor_id(t), t.dims().to_vec(), t.dtype()));
                }
                if let Some(t) = any.downcast_ref::<Tensor<Recorder, $d, Int>>() {
                    return Some((tensor_id(t), t.dims().to_vec(), t.dtype()));
                }
                if let Some(t) = any.downcast_ref::<Tensor<Recorder, $d, Bool>>() {
                    return Some((tensor_id(t), t.dims().to_vec(), t.dtype()));
                }
            )*
        };
    }
    try_ranks!(1, 2, 3, 4, 5, 6);
    None
}

/// The id of a site value that is a tensor on the recorder, if it is one.
fn erased_id(value: &dyn ErasedValue) -> Option<TensorId> {
    erased_tensor(value).map(|(id, ..)| id)
}

/// Watches the traces of a recording and writes their bodies onto the thread's tape.
struct RecordObserver {
    client: RecordClient,
}

impl RecordObserver {
    fn tape<R>(&self, f: impl FnOnce(&mut Tape) -> R) -> Option<R> {
        let mut state = self.client.lock();
        state.tapes.get_mut(&std::thread::current().id()).map(f)
    }
}

fn location(at: &'static PanicLocation<'static>) -> Location {
    Location { file: at.file().to_owned(), line: at.line(), column: at.column() }
}

fn site(observed: &ObservedSite, element: Option<usize>) -> Site {
    let kind = match (observed.kind, element) {
        (ObservedKind::Output, _) => SiteKind::Output,
        (ObservedKind::Input(i), _) | (ObservedKind::Inputs, Some(i)) => SiteKind::Input(i as u32),
        (ObservedKind::Inputs, None) => SiteKind::Input(0),
    };
    Site { path: observed.path.clone(), kind, occurrence: observed.occurrence }
}

impl Observer for RecordObserver {
    fn input(&self, input: ObservedInput<'_>) {
        let input = match input {
            ObservedInput::Text(text) => Ok(Some(Input::Text(text.to_owned()))),
            ObservedInput::Tokens(tokens) => Ok(Some(Input::Tokens(tokens.to_vec()))),
            ObservedInput::None => Ok(None),
            ObservedInput::Other(what) => Err(what.to_owned()),
        };
        self.tape(|t| t.inputs.push(input));
    }

    fn trace_started(&self, edits: usize, invokes: usize) {
        self.tape(|t| t.start_trace(edits, invokes));
    }

    fn trace_ended(&self) {
        self.tape(|t| {
            t.trace = None;
            t.body = None;
        });
    }

    fn polling(&self, body: Option<usize>) {
        self.tape(|t| t.polling(body));
    }

    fn engine_work(&self, busy: bool) {
        self.tape(|t| {
            if busy {
                t.paused = t.body.take();
            } else {
                t.body = t.paused.take().or(t.body);
            }
        });
    }

    fn read(
        &self,
        observed: &ObservedSite,
        value: &mut dyn ErasedValue,
        at: &'static PanicLocation<'static>,
    ) {
        let mut reads = Vec::new();
        if observed.kind == ObservedKind::Inputs {
            let mut i = 0;
            while let Some(element) = value.element_mut(i) {
                reads.push((site(observed, Some(i)), erased_id(element)));
                i += 1;
            }
        } else {
            reads.push((site(observed, None), erased_id(value)));
        }
        self.tape(|t| {
            for (site, id) in reads {
                // A value that is not a tensor (an `Option`, a tuple) is not read: a body that
                // uses it fails when the use is lowered.
                if let Some(id) = id {
                    t.site_node(Op::Read { site }, Some(id), location(at));
                }
            }
        });
    }

    fn wrote(&self, observed: &ObservedSite, value: &dyn ErasedValue, at: &'static PanicLocation<'static>) {
        let id = erased_id(value);
        let site = site(observed, None);
        let mut state = self.client.lock();
        let backend::ClientState { constants, tapes, .. } = &mut *state;
        let Some(t) = tapes.get_mut(&std::thread::current().id()) else { return };
        t.locate(location(at));
        let Some(id) = id else {
            return t.fail(format!(
                "writes a `{}` to `{}`, which is not a tensor",
                value.type_name(),
                site.path
            ));
        };
        match t.resolve(id, constants) {
            Ok(value) => {
                t.site_node(Op::Write { site, value }, None, location(at));
            }
            Err(what) => t.fail(format!("writes {what}")),
        }
    }

    fn skipped(&self, observed: &ObservedSite, value: Option<&dyn ErasedValue>) {
        let id = value.and_then(erased_id);
        let mut state = self.client.lock();
        let backend::ClientState { constants, tapes, .. } = &mut *state;
        let Some(t) = tapes.get_mut(&std::thread::current().id()) else { return };
        let Some(id) = id else {
            return t.fail(format!("skips `{}` with a value that is not a tensor", observed.path));
        };
        match t.resolve(id, constants) {
            Ok(value) => {
                t.push(Op::Skip { module: observed.path.clone(), occurrence: observed.occurrence, value });
            }
            Err(what) => t.fail(format!("skips with {what}")),
        }
    }

    fn call_started(&self, module: usize, type_name: &'static str, args: &mut dyn ErasedValue) {
        let mut ids = Vec::new();
        let mut i = 0;
        while let Some(element) = args.element_mut(i) {
            ids.push(erased_id(element));
            i += 1;
        }
        let mut state = self.client.lock();
        let backend::ClientState { constants, tapes, .. } = &mut *state;
        let Some(t) = tapes.get_mut(&std::thread::current().id()) else { return };
        // A module of the recorded model, called by the body itself (inside a recorded call,
        // no body runs: the call's own calls are the module's).
        let path = t.current().and_then(|_| t.modules.get(&(module, type_name)).cloned());
        let Some(path) = path else {
            t.calls.push(None);
            return;
        };
        let mut refs = Vec::with_capacity(ids.len());
        for id in ids {
            match id
                .ok_or_else(|| "an argument that is not a tensor".to_owned())
                .and_then(|id| t.resolve(id, constants))
            {
                Ok(r) => refs.push(r),
                Err(what) => {
                    t.fail(format!("calls `{path}` with {what}"));
                    t.calls.push(None);
                    return;
                }
            }
        }
        // The module's own operations are not the body's.
        let body = t.body.take();
        t.calls.push(Some(tape::PendingCall { module: path, args: refs, body }));
    }

    fn call_ended(&self, output: &mut dyn ErasedValue) {
        let id = erased_id(output);
        let type_name = output.type_name();
        self.tape(|t| {
            let Some(Some(tape::PendingCall { module, args, body })) = t.calls.pop() else { return };
            t.body = body;
            match id {
                Some(id) => {
                    t.define(Op::Call { module, args }, id);
                }
                None => t.fail(format!("calls `{module}`, whose output (`{type_name}`) is not one tensor")),
            }
        });
    }

    fn standing(
        &self,
        index: usize,
        observed: &ObservedSite,
        visits: std::ops::Range<u32>,
        at: &'static PanicLocation<'static>,
    ) {
        let element = match observed.kind {
            ObservedKind::Input(i) => Some(i),
            _ => None,
        };
        let mut site = site(observed, element);
        site.occurrence = 0;
        let end = (visits.end != u32::MAX).then_some(visits.end);
        let steps = Steps::Range { start: visits.start, end };
        self.tape(|t| {
            let Some((trace, invoke)) = t.current() else { return };
            t.locate(location(at));
            let edit = Op::Edit { site, steps, body: vec![crate::ir::Node::new(Op::Arg)] };
            if let Some(edit) = t.push(edit) {
                let at = Some(location(at));
                t.standing.insert(index, tape::StandingEdit { trace, invoke, edit, applied: false, at });
            }
        });
    }

    fn standing_applying(&self, index: usize, value: &mut dyn ErasedValue) {
        let id = erased_id(value);
        self.tape(|t| {
            let Some(edit) = t.standing.get(&index) else { return };
            if t.trace != Some(edit.trace) || t.problem.is_some() {
                return;
            }
            let (invoke, node, applied, at) = (edit.invoke, edit.edit, edit.applied, edit.at.clone());
            let scratch = applied.then(|| vec![crate::ir::Node::new(Op::Arg)]);
            t.cursor = Some(tape::EditCursor { edit: node, scratch, resume: t.body, at });
            t.body = Some(invoke);
            match id {
                Some(id) => {
                    let trace = t.trace.unwrap_or_default();
                    let arg = tape::body_ref(node, 0).unwrap_or(tape::BODY);
                    let origin = tape::Origin { trace, invoke, node: arg, scope: Some(node) };
                    t.origins.insert(id, origin);
                }
                None => t.fail("a standing edit of a value that is not a tensor".into()),
            }
        });
    }

    fn standing_applied(&self, index: usize, edited: &dyn ErasedValue) {
        let tensor = erased_tensor(edited);
        let mut state = self.client.lock();
        let backend::ClientState { constants, tapes, .. } = &mut *state;
        let Some(t) = tapes.get_mut(&std::thread::current().id()) else { return };
        let Some(cursor) = t.cursor.as_ref() else { return };
        let resume = cursor.resume;
        if let Some((id, dims, _)) = tensor {
            match t.resolve(id, constants) {
                // The body's last node is the edit's value: an edit that returns an earlier value
                // (its argument) gets an identity step.
                Ok(r) if t.last() != Some(r) => {
                    let shape = dims.iter().map(|&d| d as i64).collect();
                    t.push(Op::Reshape { x: r, shape });
                }
                Ok(_) => {}
                Err(what) => t.fail(format!("a standing edit returns {what}")),
            }
        } else {
            t.fail(format!("a standing edit returns a `{}`, not a tensor", edited.type_name()));
        }
        let cursor = t.cursor.take();
        t.body = resume;
        // Values of this application are its own: the next one computes them again.
        if let Some(c) = &cursor {
            let edit = c.edit;
            t.origins.retain(|_, o| o.scope != Some(edit));
        }
        let Some(edit) = t.standing.get_mut(&index) else { return };
        let first = !std::mem::replace(&mut edit.applied, true);
        let (trace, invoke, node) = (edit.trace, edit.invoke, edit.edit);
        if let Some(tape::EditCursor { scratch: Some(scratch), .. }) = cursor
            && !first
            && let Op::Edit { body, site, .. } = &t.traces[trace].invokes[invoke].nodes[node as usize].op
            && !body.iter().map(|n| &n.op).eq(scratch.iter().map(|n| &n.op))
        {
            let path = site.path.clone();
            t.fail(format!(
                "the standing edit of `{path}` runs other operations at a later visit than at its first; \
                 a recorded edit repeats its first visit's (make the closure do the same at every step)"
            ));
        }
    }

    fn generation(&self, options: &dyn std::any::Any) {
        let generate = options.downcast_ref::<GenerateOptions>().map(|o| Generate {
            max_new_tokens: o.max_new_tokens.min(u32::MAX as usize) as u32,
            sampler: match &o.sampling {
                Sampling::Greedy => Sampler::Greedy,
                Sampling::Sample { temperature, top_k, top_p, seed } => Sampler::Sample {
                    temperature: *temperature,
                    top_k: top_k.map(|k| k.min(u32::MAX as usize) as u32),
                    top_p: *top_p,
                    seed: *seed,
                },
            },
            stop_at_eos: o.stop_at_eos,
        });
        self.tape(|t| match generate {
            Some(generate) => t.generate = Some(generate),
            None => t.fail("a generation with options of an unknown kind".into()),
        });
    }

    fn stopped(&self) {
        self.tape(|t| t.push(Op::Stop));
    }

    fn uses(&self, what: &'static str) {
        self.tape(|t| t.fail(format!("the body uses {what}, which is not recordable yet")));
    }
}
