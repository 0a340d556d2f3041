//! The bodies of a trace, typed: one [`Group`] per `invoke` call (one body, or many alike), and
//! tuples of groups ([`Groups`]) whose results come back as a tuple.
//!
//! These traits are the glue between the invoke builders and the engine; users meet them only in
//! bounds. Each body is boxed into a task (its future already was), so bodies of different types
//! run side by side while their results keep their types.

use std::marker::PhantomData;

use crate::edit::EditBody;
use crate::engine::{Body, Task};
use crate::envoy::DynEnvoy;
use crate::error::{Error, Result};
use crate::inspectable::Inspectable;
use crate::state::TraceState;
use crate::tree::NodeId;

/// One invoke body: an async closure over the model's envoy.
pub struct One<C>(pub(crate) C);

/// Several invoke bodies of the same type (e.g. one per patch of a sweep); results as a `Vec`.
pub struct Many<C>(pub(crate) Vec<C>);

/// The bodies added by one `invoke` call.
pub trait Group<M: Inspectable> {
    /// What each body returns (inside `Ok`).
    type Item;
    /// What the group gives back: the item, or a `Vec` of items.
    type Output;

    /// The number of bodies.
    fn len(&self) -> usize;

    /// Whether the group has no body.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts the bodies on `envoy` of the trace `state` (nothing runs before the engine polls
    /// them).
    #[doc(hidden)]
    fn start<'e, 't>(self, envoy: &'e M::Envoy<'t>, state: &'e TraceState) -> Vec<Task<'e, Self::Item>>
    where
        Self: 'e;

    /// Collects the results; `first` is the index of the group's first body in the trace.
    #[doc(hidden)]
    fn finish(tasks: Vec<Task<'_, Self::Item>>, state: &TraceState, first: usize) -> Result<Self::Output>;
}

impl<M: Inspectable, R, C> Group<M> for One<C>
where
    C: for<'e, 't> AsyncFnOnce(&'e M::Envoy<'t>) -> Result<R>,
{
    type Item = R;
    type Output = R;

    fn len(&self) -> usize {
        1
    }

    fn start<'e, 't>(self, envoy: &'e M::Envoy<'t>, _: &'e TraceState) -> Vec<Task<'e, R>>
    where
        Self: 'e,
    {
        vec![Task::new(Box::pin((self.0)(envoy)))]
    }

    fn finish(tasks: Vec<Task<'_, R>>, state: &TraceState, first: usize) -> Result<R> {
        let task = tasks.into_iter().next().expect("one body, one task");
        task.into_result(state, first)
    }
}

impl<M: Inspectable, R, C> Group<M> for Many<C>
where
    C: for<'e, 't> AsyncFnOnce(&'e M::Envoy<'t>) -> Result<R>,
{
    type Item = R;
    type Output = Vec<R>;

    fn len(&self) -> usize {
        self.0.len()
    }

    fn start<'e, 't>(self, envoy: &'e M::Envoy<'t>, _: &'e TraceState) -> Vec<Task<'e, R>>
    where
        Self: 'e,
    {
        self.0.into_iter().map(|body| Task::new(Box::pin(body(envoy)))).collect()
    }

    fn finish(tasks: Vec<Task<'_, R>>, state: &TraceState, first: usize) -> Result<Vec<R>> {
        finish_each(tasks, state, first)
    }
}

/// The results of several bodies, the first of which is body `first` of the trace.
fn finish_each<R>(tasks: Vec<Task<'_, R>>, state: &TraceState, first: usize) -> Result<Vec<R>> {
    tasks.into_iter().enumerate().map(|(i, task)| task.into_result(state, first + i)).collect()
}

/// Several invoke bodies on the model's untyped root envoy ([`DynEnvoy`]), which reach sites by
/// path: bodies that learn what to touch at run time (the IR's interpreter). Results as a `Vec`.
pub struct ManyDyn<C>(pub(crate) Vec<C>);

impl<M: Inspectable, R, C> Group<M> for ManyDyn<C>
where
    C: for<'t> AsyncFnOnce(DynEnvoy<'t>) -> Result<R>,
{
    type Item = R;
    type Output = Vec<R>;

    fn len(&self) -> usize {
        self.0.len()
    }

    fn start<'e, 't>(self, _: &'e M::Envoy<'t>, state: &'e TraceState) -> Vec<Task<'e, R>>
    where
        Self: 'e,
    {
        self.0.into_iter().map(|body| Task::new(Box::pin(body(DynEnvoy::new(state, NodeId::ROOT))))).collect()
    }

    fn finish(tasks: Vec<Task<'_, R>>, state: &TraceState, first: usize) -> Result<Vec<R>> {
        finish_each(tasks, state, first)
    }
}

/// Runs the bodies of a trace: the engine sees them as one list, edits first.
pub type Drive<'d> = &'d mut dyn FnMut(Vec<&mut dyn Body>) -> Option<usize>;

/// All the groups of a trace, as a tuple; implemented for tuples of up to eight groups.
pub trait Groups<M: Inspectable> {
    /// The tuple of the groups' outputs.
    type Output;

    /// The number of bodies.
    fn count(&self) -> usize;

    /// Starts every body, lets `drive` run them with the `edits` first, collects the results.
    #[doc(hidden)]
    fn run<'e, 't>(
        self,
        envoy: &'e M::Envoy<'t>,
        state: &'e TraceState,
        edits: &[&'e dyn EditBody<M>],
        drive: Drive<'_>,
    ) -> Result<Self::Output>
    where
        Self: 'e;
}

/// Adding one more group to a tuple of groups.
pub trait Push<G> {
    /// The longer tuple.
    type Output;
    /// `self` with `group` at the end.
    fn push(self, group: G) -> Self::Output;
}

/// The error that ended the trace: the engine's own, else the first failed body's.
fn failure(state: &TraceState, failed: Option<usize>, bodies: &mut [&mut dyn Body]) -> Option<Error> {
    if let Some(error) = state.failure.borrow_mut().take() {
        return Some(error);
    }
    failed.and_then(|i| bodies[i].take_error())
}

/// The started bodies of one group, waiting to be driven and then collected.
pub(crate) struct Started<'e, M: Inspectable, G: Group<M>> {
    tasks: Vec<Task<'e, G::Item>>,
    _group: PhantomData<fn() -> (M, G)>,
}

impl<'e, M: Inspectable, G: Group<M>> Started<'e, M, G> {
    fn new(group: G, envoy: &'e M::Envoy<'_>, state: &'e TraceState) -> Self
    where
        G: 'e,
    {
        Started { tasks: group.start(envoy, state), _group: PhantomData }
    }
}

/// The started groups of a trace, as a tuple: their bodies in order, and their results.
#[doc(hidden)]
pub(crate) trait StartedGroups {
    /// The tuple of the groups' outputs.
    type Output;
    /// Every body, in invoke order.
    fn bodies(&mut self) -> Vec<&mut dyn Body>;
    /// The groups' results; `first` is the index of the first group's first body.
    fn finish(self, state: &TraceState, first: usize) -> Result<Self::Output>;
}

/// Drives the edits' and the groups' bodies (edits first), then collects their results: the
/// engine's error or the first failed body's, else every edit's and then every group's result.
fn run_started<S: StartedGroups>(
    mut edits: Vec<Task<'_, ()>>,
    mut groups: S,
    state: &TraceState,
    drive: Drive<'_>,
) -> Result<S::Output> {
    let failed = drive(all_bodies(&mut edits, &mut groups));
    if let Some(error) = failure(state, failed, &mut all_bodies(&mut edits, &mut groups)) {
        return Err(error);
    }
    let count = edits.len();
    for (i, task) in edits.into_iter().enumerate() {
        task.into_result(state, i)?;
    }
    groups.finish(state, count)
}

/// The edits' bodies, then the groups'.
fn all_bodies<'a, S: StartedGroups>(
    edits: &'a mut [Task<'_, ()>],
    groups: &'a mut S,
) -> Vec<&'a mut dyn Body> {
    let mut bodies: Vec<&mut dyn Body> = edits.iter_mut().map(|t| t as &mut dyn Body).collect();
    bodies.extend(groups.bodies());
    bodies
}

impl StartedGroups for () {
    type Output = ();

    fn bodies(&mut self) -> Vec<&mut dyn Body> {
        Vec::new()
    }

    fn finish(self, _: &TraceState, _: usize) -> Result<()> {
        Ok(())
    }
}

// The tuple impls only hand the parts to `run_started` and `Group`'s own methods.
macro_rules! groups {
    (@started) => {};
    (@started $($g:ident $i:tt),+) => {
        impl<'e, M: Inspectable, $($g: Group<M>),+> StartedGroups for ($(Started<'e, M, $g>,)+) {
            type Output = ($($g::Output,)+);

            fn bodies(&mut self) -> Vec<&mut dyn Body> {
                let mut bodies: Vec<&mut dyn Body> = Vec::new();
                $(bodies.extend(self.$i.tasks.iter_mut().map(|t| t as &mut dyn Body));)+
                bodies
            }

            #[allow(unused_assignments)]
            fn finish(self, state: &TraceState, first: usize) -> Result<Self::Output> {
                let mut first = first;
                Ok(($({
                    let count = self.$i.tasks.len();
                    let output = $g::finish(self.$i.tasks, state, first)?;
                    first += count;
                    output
                },)+))
            }
        }
    };
    ($(($($g:ident $i:tt),*))*) => {$(
        impl<M: Inspectable, $($g: Group<M>),*> Groups<M> for ($($g,)*) {
            type Output = ($($g::Output,)*);

            fn count(&self) -> usize {
                0 $(+ self.$i.len())*
            }

            #[allow(unused_variables)]
            fn run<'e, 't>(
                self,
                envoy: &'e M::Envoy<'t>,
                state: &'e TraceState,
                edits: &[&'e dyn EditBody<M>],
                drive: Drive<'_>,
            ) -> Result<Self::Output>
            where
                Self: 'e,
            {
                let edit_tasks = edits.iter().map(|edit| Task::new(edit.start(envoy))).collect();
                let started = ($(Started::<M, $g>::new(self.$i, envoy, state),)*);
                run_started(edit_tasks, started, state, drive)
            }
        }

        groups!(@started $($g $i),*);
    )*};
}
groups! {
    ()
    (G0 0)
    (G0 0, G1 1)
    (G0 0, G1 1, G2 2)
    (G0 0, G1 1, G2 2, G3 3)
    (G0 0, G1 1, G2 2, G3 3, G4 4)
    (G0 0, G1 1, G2 2, G3 3, G4 4, G5 5)
    (G0 0, G1 1, G2 2, G3 3, G4 4, G5 5, G6 6)
    (G0 0, G1 1, G2 2, G3 3, G4 4, G5 5, G6 6, G7 7)
}

macro_rules! push {
    ($(($($g:ident $i:tt),*))*) => {$(
        impl<$($g,)* G> Push<G> for ($($g,)*) {
            type Output = ($($g,)* G,);
            fn push(self, group: G) -> Self::Output {
                ($(self.$i,)* group,)
            }
        }
    )*};
}
push! {
    ()
    (G0 0)
    (G0 0, G1 1)
    (G0 0, G1 1, G2 2)
    (G0 0, G1 1, G2 2, G3 3)
    (G0 0, G1 1, G2 2, G3 3, G4 4)
    (G0 0, G1 1, G2 2, G3 3, G4 4, G5 5)
    (G0 0, G1 1, G2 2, G3 3, G4 4, G5 5, G6 6)
}
