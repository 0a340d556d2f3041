//! Invokes on a [`LanguageModel`]: several prompts (each with its own body) left-padded into one
//! batch and run as **one** forward pass.

use std::fmt;
use std::marker::PhantomData;

use burn::prelude::*;
use nnsight::invoke::{Groups, Many, ManyDyn, One, Push, Root, layout, no_input};
use nnsight::{Error, Invokes, Result};

use crate::language_model::{CausalLm, EditedLm, LanguageModel};
use crate::prompts::Prompts;

/// A trace of a [`LanguageModel`] made of invokes, waiting for [`run`](Self::run); built by
/// [`LanguageModel::tracer`].
///
/// Each invoke's prompts become consecutive rows of one left-padded batch (position ids come
/// from the attention mask, so padding does not change a prompt's results); each body sees only
/// its rows, and at every site the bodies run in the order they were added.
#[must_use = "a trace runs only when `run` is called"]
pub struct LmInvokes<'m, B: Backend, M: CausalLm<B>, G> {
    inner: Invokes<'m, M, Prompts, G>,
    _backend: PhantomData<fn() -> B>,
}

impl<B: Backend, M: CausalLm<B>, G> fmt::Debug for LmInvokes<'_, B, M, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl<B: Backend, M: CausalLm<B>> LanguageModel<B, M> {
    /// A trace made of invokes: several prompts, each with its own body, left-padded into one
    /// batch and run as one forward pass. See [`LmInvokes`](LmInvokes).
    ///
    /// ```no_run
    /// # use burn::backend::Flex;
    /// # use burn::prelude::*;
    /// # use nnsight_models::{LanguageModel, gpt2::Gpt2LMHeadModel};
    /// # fn main() -> nnsight::Result<()> {
    /// # let lm = LanguageModel::<Flex, Gpt2LMHeadModel<Flex>>::from_pretrained("openai-community/gpt2", &Default::default())?;
    /// let cat = nnsight::Shared::new("layer 6 output of the cat prompt");
    /// let ((), logits) = lm
    ///     .tracer()
    ///     .invoke("The cat sat on the", async |m| cat.set(m.transformer.h[6].output().await?))
    ///     .invoke("The dog ran through the", async |m| {
    ///         m.transformer.h[6].output().replace_with(|| cat.get()).await?;
    ///         m.output().await
    ///     })
    ///     .run()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn tracer(&self) -> LmInvokes<'_, B, M, ()> {
        LmInvokes::new(self)
    }
}

impl<'m, B: Backend, M: CausalLm<B>> EditedLm<'m, B, M> {
    /// A trace made of invokes, the edits applied first (see [`LanguageModel::tracer`]).
    pub fn tracer(&self) -> LmInvokes<'m, B, M, ()> {
        LmInvokes::new(self.unedited()).edited(self.edited())
    }
}

impl<'m, B: Backend, M: CausalLm<B>> LmInvokes<'m, B, M, ()> {
    pub(crate) fn new(lm: &'m LanguageModel<B, M>) -> Self {
        let batcher = Box::new(move |inputs: Vec<Option<Prompts>>| {
            let mut tokens = Vec::new();
            let mut rows = Vec::with_capacity(inputs.len());
            for (i, prompts) in inputs.into_iter().enumerate() {
                let Some(prompts) = prompts else {
                    rows.push(None);
                    continue;
                };
                let ids = lm.tokenize(prompts)?;
                if ids.is_empty() {
                    return Err(Error::Input { problem: format!("invoke {i} has no prompt") });
                }
                rows.push(Some(ids.len()));
                tokens.extend(ids);
            }
            if tokens.is_empty() {
                return Err(no_input());
            }
            let batch = lm.batch(Prompts::Ids(tokens))?;
            Ok(((batch.input_ids, batch.attention_mask), layout(&rows)))
        });
        LmInvokes { inner: Invokes::new(lm.model(), batcher), _backend: PhantomData }
    }
}

impl<'m, B: Backend, M: CausalLm<B>, G> LmInvokes<'m, B, M, G> {
    /// The same invokes with `edited`'s edits applied first.
    pub(crate) fn edited(self, edited: &nnsight::Edited<'m, M>) -> Self {
        LmInvokes { inner: self.inner.edited(edited), _backend: PhantomData }
    }

    /// Adds an invoke: `prompts` (one or several, text or token ids) become rows of the batch,
    /// and `body` sees only those rows of every batched value.
    pub fn invoke<C, R>(self, prompts: impl Into<Prompts>, body: C) -> LmInvokes<'m, B, M, G::Output>
    where
        G: Push<One<C>>,
        C: for<'e, 't> AsyncFnOnce(&'e M::Envoy<'t>) -> Result<R>,
    {
        let prompts = prompts.into();
        prompts.observe();
        LmInvokes { inner: self.inner.invoke_input(Some(prompts), body), _backend: PhantomData }
    }

    /// Adds an invoke without prompt: its body sees the whole batch.
    pub fn invoke_all<C, R>(self, body: C) -> LmInvokes<'m, B, M, G::Output>
    where
        G: Push<One<C>>,
        C: for<'e, 't> AsyncFnOnce(&'e M::Envoy<'t>) -> Result<R>,
    {
        nnsight::observe::input(nnsight::observe::ObservedInput::None);
        LmInvokes { inner: self.inner.invoke_input(None, body), _backend: PhantomData }
    }

    /// Adds one invoke per `(prompts, body)` pair, all with bodies of one type (e.g. one per
    /// patch of a sweep); their results come back as one `Vec`.
    pub fn invoke_each<P, C, R>(
        self,
        invokes: impl IntoIterator<Item = (P, C)>,
    ) -> LmInvokes<'m, B, M, G::Output>
    where
        P: Into<Prompts>,
        G: Push<Many<C>>,
        C: for<'e, 't> AsyncFnOnce(&'e M::Envoy<'t>) -> Result<R>,
    {
        let invokes = invokes.into_iter().map(|(prompts, body)| {
            let prompts = prompts.into();
            prompts.observe();
            (Some(prompts), body)
        });
        LmInvokes { inner: self.inner.invoke_inputs(invokes), _backend: PhantomData }
    }

    /// Adds one invoke per `(prompts, body)` pair (`None`: the whole batch), with bodies on the
    /// model's untyped root envoy (a [`DynEnvoy`](nnsight::DynEnvoy) that reaches modules by
    /// path): for bodies that learn what to touch at run time, as the IR's interpreter. Their
    /// results come back as one `Vec`.
    pub fn invoke_inputs_dyn<C, R>(
        self,
        invokes: impl IntoIterator<Item = (Option<Prompts>, C)>,
    ) -> LmInvokes<'m, B, M, G::Output>
    where
        G: Push<ManyDyn<C>>,
        C: for<'t> AsyncFnOnce(nnsight::DynEnvoy<'t>) -> Result<R>,
    {
        LmInvokes { inner: self.inner.invoke_inputs_dyn(invokes), _backend: PhantomData }
    }

    /// Runs one batched forward pass with every body interleaved; returns the bodies' results as
    /// a tuple in the order the invokes were added.
    ///
    /// # Errors
    /// [`Error::Input`] / [`Error::Tokenizer`] for prompts the model cannot take; else the first
    /// error of a body.
    pub fn run(self) -> Result<G::Output>
    where
        G: Groups<M>,
    {
        self.inner.run()
    }

    /// Runs the bodies interleaved with `run`, which gets the batch (`input_ids`,
    /// `attention_mask`) and calls the model through [`Root::call`](nnsight::invoke::Root::call) as often as it needs
    /// (see `nnsight::Invokes::run_loop`); generation is built on it.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn run_loop<T>(
        self,
        run: impl FnOnce((Tensor<B, 2, Int>, Tensor<B, 2, Int>), &Root<'_, '_, '_>) -> T,
    ) -> Result<(G::Output, Option<T>)>
    where
        G: Groups<M>,
    {
        self.inner.run_loop(run)
    }
}
