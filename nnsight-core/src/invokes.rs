//! Invokes: several inputs, each with its own body, run as **one** batched forward pass.
//!
//! ```text
//! model.tracer()
//!     .invoke(x_a, async |m| { .. })   // sees rows of x_a
//!     .invoke(x_b, async |m| { .. })   // sees rows of x_b
//!     .invoke_all(async |m| { .. })    // no input: sees the whole batch
//!     .run()?                          // (result_a, result_b, result_all)
//! ```
//!
//! At every site the bodies run in declaration order, so a value read by one invoke can be used
//! by a later invoke at the same or a later site (pass it through a [`Shared`](crate::Shared)).

use std::fmt;

use crate::batch::{Concat, layout};
use crate::edit::{EditBody, EditList, Edited};
use crate::engine::{Body, Engine, Root};
use crate::error::{Error, Result};
use crate::group::{Groups, Many, ManyDyn, One, Push};
use crate::inspectable::{Forward, Inspectable, IntoInputs};
use crate::state::TraceState;
use crate::tree::{NodeId, Tree};
use crate::value::Rows;

/// Joins the invokes' inputs (`None` for an invoke without input) into the model's arguments,
/// and says which rows each invoke owns.
pub type Batcher<'m, M, In> = Box<
    dyn FnOnce(Vec<Option<In>>) -> Result<(<M as crate::inspectable::Signature>::Inputs, Vec<Option<Rows>>)>
        + 'm,
>;

/// A trace made of invokes, waiting for [`run`](Self::run). Built by
/// [`TraceExt::tracer`](crate::TraceExt::tracer) (inputs joined along dimension 0) or by a
/// wrapper with its own batching (a language model pads its prompts).
#[must_use = "a trace runs only when `run` is called"]
pub struct Invokes<'m, M: Inspectable + Forward, In, G> {
    model: &'m M,
    edits: EditList<'m, M>,
    batcher: Batcher<'m, M, In>,
    inputs: Vec<Option<In>>,
    groups: G,
}

impl<M: Inspectable + Forward, In, G> fmt::Debug for Invokes<'_, M, In, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invokes").field("invokes", &self.inputs.len()).finish_non_exhaustive()
    }
}

impl<'m, M: Inspectable + Forward> Invokes<'m, M, M::Inputs, ()>
where
    M::Inputs: Concat,
{
    /// Invokes whose inputs are joined along dimension 0 ([`Concat`]).
    pub fn concatenating(model: &'m M) -> Self {
        Invokes::new(model, Box::new(concat_inputs::<M::Inputs>))
    }
}

fn concat_inputs<T: Concat>(inputs: Vec<Option<T>>) -> Result<(T, Vec<Option<Rows>>)> {
    let rows = layout(&inputs.iter().map(|i| i.as_ref().map(Concat::rows)).collect::<Vec<_>>());
    let mut parts: Vec<T> = inputs.into_iter().flatten().collect();
    if parts.is_empty() {
        return Err(no_input());
    }
    let batch = if parts.len() == 1 { parts.pop().expect("one part") } else { T::concat(parts)? };
    Ok((batch, rows))
}

/// The error of a trace whose invokes all lack an input.
pub fn no_input() -> Error {
    Error::Input {
        problem: "no invoke has an input: a trace needs at least one `invoke(input, ..)` \
                  (`invoke_all` only adds a body that sees the others' batch)"
            .to_owned(),
    }
}

impl<'m, M: Inspectable + Forward, In> Invokes<'m, M, In, ()> {
    /// Invokes of `model` whose inputs `batcher` joins into one batch.
    pub fn new(model: &'m M, batcher: Batcher<'m, M, In>) -> Self {
        Invokes { model, edits: Vec::new(), batcher, inputs: Vec::new(), groups: () }
    }
}

impl<'m, M: Inspectable + Forward, In, G> Invokes<'m, M, In, G> {
    pub(crate) fn with_edits(mut self, edits: EditList<'m, M>) -> Self {
        self.edits = edits;
        self
    }

    /// The same invokes with `edited`'s edits applied first (for wrappers that batch their own
    /// inputs, like a language model's prompts).
    pub fn edited(self, edited: &Edited<'m, M>) -> Self {
        self.with_edits(edited.edit_list())
    }

    /// Adds an invoke with `input` (or, with `None`, one that sees the whole batch) and its body:
    /// the building block of `invoke` and `invoke_all`, for wrappers that batch their own inputs.
    pub fn invoke_input<C, R>(mut self, input: Option<In>, body: C) -> Invokes<'m, M, In, G::Output>
    where
        G: Push<One<C>>,
        C: for<'e, 't> AsyncFnOnce(&'e M::Envoy<'t>) -> Result<R>,
    {
        self.inputs.push(input);
        self.push(One(body))
    }

    /// Adds one invoke per `(input, body)` pair, all with bodies of one type; their results come
    /// back as one `Vec`. The building block of `invoke_each`.
    pub fn invoke_inputs<C, R>(
        mut self,
        invokes: impl IntoIterator<Item = (Option<In>, C)>,
    ) -> Invokes<'m, M, In, G::Output>
    where
        G: Push<Many<C>>,
        C: for<'e, 't> AsyncFnOnce(&'e M::Envoy<'t>) -> Result<R>,
    {
        let mut bodies = Vec::new();
        for (input, body) in invokes {
            self.inputs.push(input);
            bodies.push(body);
        }
        self.push(Many(bodies))
    }

    /// Adds one invoke per `(input, body)` pair, with bodies on the model's untyped root envoy
    /// (a [`DynEnvoy`](crate::DynEnvoy) that reaches modules by path): for bodies that learn what
    /// to touch at run time, as the IR's interpreter. Their results come back as one `Vec`.
    pub fn invoke_inputs_dyn<C, R>(
        mut self,
        invokes: impl IntoIterator<Item = (Option<In>, C)>,
    ) -> Invokes<'m, M, In, G::Output>
    where
        G: Push<ManyDyn<C>>,
        C: for<'t> AsyncFnOnce(crate::DynEnvoy<'t>) -> Result<R>,
    {
        let mut bodies = Vec::new();
        for (input, body) in invokes {
            self.inputs.push(input);
            bodies.push(body);
        }
        self.push(ManyDyn(bodies))
    }

    /// Adds an invoke without input: its body sees the whole batch (all invokes' rows).
    pub fn invoke_all<C, R>(self, body: C) -> Invokes<'m, M, In, G::Output>
    where
        G: Push<One<C>>,
        C: for<'e, 't> AsyncFnOnce(&'e M::Envoy<'t>) -> Result<R>,
    {
        self.invoke_input(None, body)
    }

    fn push<X>(self, group: X) -> Invokes<'m, M, In, G::Output>
    where
        G: Push<X>,
    {
        let Invokes { model, edits, batcher, inputs, groups } = self;
        Invokes { model, edits, batcher, inputs, groups: groups.push(group) }
    }

    /// Runs one batched forward pass with every body interleaved; returns their results as a
    /// tuple, in the order the invokes were added (a `Vec` for each `invoke_each`).
    ///
    /// # Errors
    /// [`Error::Input`] when no invoke has an input or the inputs cannot form one batch; else the
    /// first error of a body (as [`Tracer::run`](crate::Tracer::run)).
    pub fn run(self) -> Result<G::Output>
    where
        G: Groups<M>,
    {
        let Invokes { model, edits, batcher, inputs, groups } = self;
        let (batch, rows) = batcher(inputs)?;
        drive(model, batch, rows, &edits, groups)
    }
}

impl<'m, M: Inspectable + Forward, G> Invokes<'m, M, M::Inputs, G> {
    /// Adds an invoke: `input` becomes rows of the batch, and `body` sees only those rows of
    /// every batched value; what it writes is spliced back into them.
    pub fn invoke<I, C, R>(self, input: I, body: C) -> Invokes<'m, M, M::Inputs, G::Output>
    where
        I: IntoInputs<M::Inputs>,
        G: Push<One<C>>,
        C: for<'e, 't> AsyncFnOnce(&'e M::Envoy<'t>) -> Result<R>,
    {
        self.invoke_input(Some(input.into_inputs()), body)
    }

    /// Adds one invoke per `(input, body)` pair (e.g. one per patch of a sweep); their results
    /// come back as one `Vec`.
    pub fn invoke_each<I, C, R>(
        self,
        invokes: impl IntoIterator<Item = (I, C)>,
    ) -> Invokes<'m, M, M::Inputs, G::Output>
    where
        I: IntoInputs<M::Inputs>,
        G: Push<Many<C>>,
        C: for<'e, 't> AsyncFnOnce(&'e M::Envoy<'t>) -> Result<R>,
    {
        self.invoke_inputs(invokes.into_iter().map(|(input, body)| (Some(input.into_inputs()), body)))
    }
}

/// Runs one forward pass of `model` on `inputs` with the `edits` and then the `groups`' bodies
/// interleaved; `rows` says which rows each invoke body sees.
pub(crate) fn drive<'m, M: Inspectable + Forward, G: Groups<M>>(
    model: &'m M,
    inputs: M::Inputs,
    rows: Vec<Option<Rows>>,
    edits: &EditList<'m, M>,
    groups: G,
) -> Result<G::Output> {
    let mut inputs = Some(inputs);
    let (output, _) = drive_with(model, rows, edits, groups, |engine| {
        if engine.start()
            && let Some(inputs) = inputs.take()
        {
            engine.run_root(inputs, |inputs| model.forward_inputs(inputs));
        }
    })?;
    Ok(output)
}

/// Tells the trace's observer that the trace is over, however it ends.
struct Ended<'s>(&'s TraceState);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        if let Some(observer) = &self.0.observer {
            observer.trace_ended();
        }
    }
}

/// Runs `run` (which drives the forward pass or passes) with the bodies interleaved; returns the
/// bodies' results and `run`'s.
fn drive_with<'m, M: Inspectable, G: Groups<M>, T>(
    model: &'m M,
    rows: Vec<Option<Rows>>,
    edits: &EditList<'m, M>,
    groups: G,
    run: impl FnOnce(&Engine<'_, '_>) -> T,
) -> Result<(G::Output, Option<T>)> {
    let mut all_rows = vec![None; edits.len()];
    all_rows.extend(rows);
    debug_assert_eq!(all_rows.len(), edits.len() + groups.count());
    let state = TraceState::new(Tree::of(model), all_rows, edits.len());
    if let Some(observer) = &state.observer {
        observer.trace_started(edits.len(), groups.count());
    }
    let _ended = Ended(&state);
    let envoy = M::envoy(&state, NodeId::ROOT);
    let edit_refs: Vec<&dyn EditBody<M>> = edits.iter().map(|e| &**e as &dyn EditBody<M>).collect();
    let mut run = Some(run);
    let mut result = None;
    let mut drive = |bodies: Vec<&mut dyn Body>| {
        let engine = Engine::new(&state, bodies);
        if let Some(run) = run.take() {
            result = Some(run(&engine));
        }
        engine.finish();
        engine.failed()
    };
    let output = groups.run(&envoy, &state, &edit_refs, &mut drive)?;
    Ok((output, result))
}

impl<'m, M: Inspectable + Forward, In, G: Groups<M>> Invokes<'m, M, In, G> {
    /// Runs the bodies interleaved with `run`, which gets the batched inputs and calls the root
    /// module through [`Root::call`] as often as it needs — e.g. a generation loop, one call per
    /// step, so that every step is a new visit of every site. Returns the bodies' results and
    /// `run`'s (`None` when a body stopped the pass).
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn run_loop<T>(
        self,
        run: impl FnOnce(M::Inputs, &Root<'_, '_, '_>) -> T,
    ) -> Result<(G::Output, Option<T>)> {
        let Invokes { model, edits, batcher, inputs, groups } = self;
        let (batch, rows) = batcher(inputs)?;
        let (output, result) = drive_with(model, rows, &edits, groups, |engine| {
            engine.start();
            if engine.halted() {
                return None;
            }
            engine.run_loop(|root| run(batch, root))
        })?;
        Ok((output, result.flatten()))
    }
}
