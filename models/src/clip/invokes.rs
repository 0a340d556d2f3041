//! Invokes on a CLIP model: texts and images as invokes of their own tower, run as **one**
//! forward pass.
//!
//! CLIP's input is two batches — texts for the text tower, images for the vision tower — so its
//! invokes are of two kinds. The texts of every text invoke become consecutive rows of one padded
//! text batch ([`TEXTS`], part 0), the images of every image invoke consecutive rows of one image
//! batch ([`IMAGES`], part 1). A body sees its own rows of its tower's values (`text_model`,
//! `text_projection` for a text invoke; `vision_model`, `visual_projection` for an image invoke),
//! and the rest whole, read-only: the other tower's values and the model's own, whose
//! `logits_per_image` `[images, texts]` combines both.

use std::fmt;

use burn::prelude::*;
use nnsight::invoke::{Concat, Groups, One, Push, layout_parts, no_input};
use nnsight::{Error, Invokes, Result};

use super::ClipModel;

/// The part of CLIP's input that holds the texts (the text tower's batch).
pub const TEXTS: usize = 0;
/// The part of CLIP's input that holds the images (the vision tower's batch).
pub const IMAGES: usize = 1;

/// What one invoke of a [`ClipInvokes`] brings.
#[derive(Clone, Debug)]
pub enum ClipInput<B: Backend> {
    /// Texts as [`encode_texts`](super::encode_texts) makes them: `(input_ids, attention_mask)`
    /// `[texts, tokens]`, right-padded.
    Texts(Tensor<B, 2, Int>, Tensor<B, 2, Int>),
    /// Images as the [`ImageProcessor`](crate::vision::ImageProcessor) makes them: `pixel_values`
    /// `[images, channels, height, width]`.
    Images(Tensor<B, 4>),
}

/// A trace of a [`ClipModel`] made of text and image invokes, waiting for [`run`](Self::run);
/// built by [`ClipModel::tracer`].
#[must_use = "a trace runs only when `run` is called"]
pub struct ClipInvokes<'m, B: Backend, G> {
    inner: Invokes<'m, ClipModel<B>, ClipInput<B>, G>,
}

impl<B: Backend, G> fmt::Debug for ClipInvokes<'_, B, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl<B: Backend> ClipModel<B> {
    /// A trace made of invokes, each with texts or images of its own and a body that sees its
    /// rows of its tower (see [`ClipInvokes`]). It shadows the generic
    /// [`TraceExt::tracer`](nnsight::TraceExt::tracer), whose invokes would each bring texts and
    /// images together.
    ///
    /// ```no_run
    /// # use burn::backend::Flex;
    /// # use burn::prelude::*;
    /// # use nnsight::prelude::*;
    /// # use std::path::Path;
    /// # use nnsight_models::clip::{ClipModel, encode_texts};
    /// # use nnsight_models::vision::{ImageProcessor, open_image};
    /// # fn main() -> nnsight::Result<()> {
    /// # let device = Default::default();
    /// # let (clip, config) = ClipModel::<Flex>::from_pretrained("openai/clip-vit-base-patch32", &device)?;
    /// # let tokenizer = tokenizers::Tokenizer::from_file("clip/tokenizer.json")
    /// #     .map_err(|e| nnsight::Error::Tokenizer { problem: e.to_string() })?;
    /// # let processor = ImageProcessor::from_file(Path::new("clip/preprocessor_config.json"))?;
    /// let (ids, mask) = encode_texts::<Flex>(&tokenizer, &["a cat", "a dog"], &config.text_config, &device)?;
    /// let cats = processor.preprocess::<Flex>(&[open_image(Path::new("cat.png"))?], &device)?;
    /// let dogs = processor.preprocess::<Flex>(&[open_image(Path::new("dog.png"))?], &device)?;
    /// let (texts, (), logits) = clip
    ///     .tracer()
    ///     .invoke_texts((ids, mask), async |m| m.text_projection.output::<Tensor<Flex, 2>>().await)
    ///     .invoke_images(cats, async |m| m.vision_model.encoder.layers[3].output().await.map(drop))
    ///     .invoke_images(dogs, async |m| m.output().await) // all of logits_per_image
    ///     .run()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn tracer(&self) -> ClipInvokes<'_, B, ()> {
        let max_tokens = self.text_model.embeddings.position_embedding.weight.dims()[0];
        let batcher = Box::new(move |inputs: Vec<Option<ClipInput<B>>>| batch(inputs, max_tokens));
        ClipInvokes { inner: Invokes::new(self, batcher) }
    }
}

/// The model's arguments from the invokes' texts and images, and each invoke's rows.
type Batched<B> = ((Tensor<B, 2, Int>, Tensor<B, 2, Int>, Tensor<B, 4>), Vec<Option<nnsight::invoke::Rows>>);

fn batch<B: Backend>(inputs: Vec<Option<ClipInput<B>>>, max_tokens: usize) -> Result<Batched<B>> {
    let mut texts = Vec::new();
    let mut images = Vec::new();
    let mut parts = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        match input {
            None => parts.push(None),
            Some(ClipInput::Texts(ids, mask)) => {
                let (shape, mask_shape) = (ids.dims(), mask.dims());
                if shape != mask_shape {
                    return Err(input_error(format!(
                        "invoke {i}'s input_ids are {shape:?} and its attention_mask {mask_shape:?}; \
                         they must have one shape"
                    )));
                }
                if shape[0] == 0 || shape[1] == 0 {
                    return Err(input_error(format!("invoke {i} has no text (input_ids {shape:?})")));
                }
                if shape[1] > max_tokens {
                    return Err(input_error(format!(
                        "invoke {i}'s texts are {} tokens; the text tower takes at most {max_tokens}",
                        shape[1]
                    )));
                }
                parts.push(Some((TEXTS, shape[0])));
                texts.push((ids, mask));
            }
            Some(ClipInput::Images(pixels)) => {
                let shape = pixels.dims();
                if shape[0] == 0 {
                    return Err(input_error(format!("invoke {i} has no image (pixel_values {shape:?})")));
                }
                parts.push(Some((IMAGES, shape[0])));
                images.push(pixels);
            }
        }
    }
    if texts.is_empty() && images.is_empty() {
        return Err(no_input());
    }
    if texts.is_empty() || images.is_empty() {
        let missing = if texts.is_empty() { "text (`invoke_texts`)" } else { "image (`invoke_images`)" };
        return Err(input_error(format!(
            "CLIP's forward pass takes texts and images together: add an invoke with at least one {missing}"
        )));
    }
    let (ids, mask) = pad_texts(texts);
    let pixels = Concat::concat(images)?;
    Ok(((ids, mask, pixels), layout_parts(&parts)))
}

/// The invokes' texts as one batch, as wide as the widest: each row is padded further with its
/// own last id (mask 0), which moves neither its first end-of-text token nor its first largest id
/// — the two places the text tower pools at.
fn pad_texts<B: Backend>(
    texts: Vec<(Tensor<B, 2, Int>, Tensor<B, 2, Int>)>,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let width = texts.iter().map(|(ids, _)| ids.dims()[1]).max().unwrap_or(0);
    let (ids, masks): (Vec<_>, Vec<_>) = texts
        .into_iter()
        .map(|(ids, mask)| {
            let [rows, tokens] = ids.dims();
            if tokens == width {
                return (ids, mask);
            }
            let last = ids.clone().narrow(1, tokens - 1, 1).expand([rows, width - tokens]);
            let none = mask.zeros_like().narrow(1, 0, 1).expand([rows, width - tokens]);
            (Tensor::cat(vec![ids, last], 1), Tensor::cat(vec![mask, none], 1))
        })
        .unzip();
    (Tensor::cat(ids, 0), Tensor::cat(masks, 0))
}

fn input_error(problem: String) -> Error {
    Error::Input { problem }
}

impl<'m, B: Backend, G> ClipInvokes<'m, B, G> {
    /// Adds a text invoke: `(input_ids, attention_mask)` `[texts, tokens]` (as
    /// [`encode_texts`](super::encode_texts) makes them) become rows of the text batch, and `body`
    /// sees those rows of the text tower's values.
    pub fn invoke_texts<C, R>(
        self,
        (input_ids, attention_mask): (Tensor<B, 2, Int>, Tensor<B, 2, Int>),
        body: C,
    ) -> ClipInvokes<'m, B, G::Output>
    where
        G: Push<One<C>>,
        C: for<'e, 't> AsyncFnOnce(&'e super::ClipModelEnvoy<'t, B>) -> Result<R>,
    {
        self.invoke(ClipInput::Texts(input_ids, attention_mask), body)
    }

    /// Adds an image invoke: `pixel_values` `[images, channels, height, width]` become rows of
    /// the image batch, and `body` sees those rows of the vision tower's values.
    pub fn invoke_images<C, R>(self, pixel_values: Tensor<B, 4>, body: C) -> ClipInvokes<'m, B, G::Output>
    where
        G: Push<One<C>>,
        C: for<'e, 't> AsyncFnOnce(&'e super::ClipModelEnvoy<'t, B>) -> Result<R>,
    {
        self.invoke(ClipInput::Images(pixel_values), body)
    }

    /// Adds an invoke of either kind.
    pub fn invoke<C, R>(self, input: ClipInput<B>, body: C) -> ClipInvokes<'m, B, G::Output>
    where
        G: Push<One<C>>,
        C: for<'e, 't> AsyncFnOnce(&'e super::ClipModelEnvoy<'t, B>) -> Result<R>,
    {
        ClipInvokes { inner: self.inner.invoke_input(Some(input), body) }
    }

    /// Adds an invoke without input: its body sees every value whole, and may write them.
    pub fn invoke_all<C, R>(self, body: C) -> ClipInvokes<'m, B, G::Output>
    where
        G: Push<One<C>>,
        C: for<'e, 't> AsyncFnOnce(&'e super::ClipModelEnvoy<'t, B>) -> Result<R>,
    {
        ClipInvokes { inner: self.inner.invoke_input(None, body) }
    }

    /// Runs one forward pass on every invoke's texts and images with the bodies interleaved;
    /// returns their results as a tuple, in the order the invokes were added.
    ///
    /// # Errors
    /// [`Error::Input`] when the invokes bring no text or no image, a text's ids and mask differ
    /// in shape, a text is longer than the text tower takes, or the images differ in size; else
    /// the first error of a body.
    pub fn run(self) -> Result<G::Output>
    where
        G: Groups<ClipModel<B>>,
    {
        self.inner.run()
    }
}
