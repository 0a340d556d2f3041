//! Gemma's tokenizer from a GGUF file (`tokenizer.ggml.model = "llama"`, a SentencePiece-style
//! BPE vocabulary with byte fallback), built the way Hugging Face transformers builds it
//! (`integrations/gguf/gguf_tokenizer_mapping.py`: `gemma_tokenizer`, `get_merges`,
//! `add_gguf_special_tokens`; `GemmaTokenizer`'s normalizer, pre-tokenizer and decoder;
//! `generate_merges` of `tokenization_utils_base.py`).
//!
//! The file lists no merges: they are recovered from the vocabulary — every way of cutting a
//! token into two tokens of the vocabulary — and ranked by the token's position in the file
//! (Gemma's scores do not follow its merge order; its token order does).

use std::collections::HashSet;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, DecoderWrapper, SplitDelimiterBehavior, Tokenizer};

use nnsight::Result;

use super::file::GgufFile;
use super::tokenizer::{CONTROL, USER_DEFINED, template};

/// SentencePiece's word-boundary mark, which stands for a space in the vocabulary.
const SPACE: &str = "\u{2581}";

/// The architectures whose `llama` vocabulary transformers reads as Gemma's.
pub(super) const GEMMA_ARCHITECTURES: [&str; 3] = ["gemma", "gemma2", "gemma3"];

/// The merges a vocabulary implies, as transformers' `generate_merges(vocab, vocab_scores)` with
/// the score of a token minus its position: for each token (in the order of first appearance),
/// every cut into a left and a right part that are both tokens, those of one token ordered by
/// the parts' ids; then all of them ordered by score, left length and right length (in
/// characters), largest first, ties keeping their order.
pub(super) fn merges_from_vocabulary(tokens: &[String], vocab: &Vocab) -> Vec<(String, String)> {
    // A Python dict keeps a repeated key at its first place, with its last value.
    let mut seen = HashSet::new();
    let mut merges: Vec<(i64, usize, usize, &str, &str)> = Vec::new();
    for token in tokens {
        if !seen.insert(token.as_str()) {
            continue;
        }
        let score = -i64::from(vocab[token.as_str()]);
        let mut local: Vec<(&str, &str)> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| token.split_at(at))
            .filter(|(left, right)| vocab.contains_key(*left) && vocab.contains_key(*right))
            .collect();
        local.sort_by_key(|(left, right)| (vocab[*left], vocab[*right]));
        merges.extend(
            local
                .into_iter()
                .map(|(left, right)| (score, left.chars().count(), right.chars().count(), left, right)),
        );
    }
    merges.sort_by_key(|&(score, left, right, _, _)| std::cmp::Reverse((score, left, right)));
    merges.into_iter().map(|(_, _, _, left, right)| (left.to_owned(), right.to_owned())).collect()
}

impl GgufFile {
    /// Gemma's tokenizer (see the module's documentation): tokens of two or more spaces respelled
    /// with `▁` as `GemmaTokenizer` looks them up, merges recovered from the vocabulary, a BPE
    /// with byte fallback and `<unk>` for what is left; spaces normalised to `▁`; control tokens
    /// (`token_type` 3) special, user-defined ones (type 4: `\n`, runs of newlines, HTML tags)
    /// matched whole; `<bos>` prepended when `tokenizer.ggml.add_bos_token` is true, as it is in
    /// Gemma's files.
    pub(super) fn gemma_tokenizer(&self) -> Result<Tokenizer> {
        let missing = |key: &str| self.tokenizer_error(format!("it has no `{key}`"));
        let raw =
            self.get_str_array("tokenizer.ggml.tokens")?.ok_or_else(|| missing("tokenizer.ggml.tokens"))?;
        let token_types = self.get_i32_array("tokenizer.ggml.token_type")?.unwrap_or_default();
        let tokens: Vec<String> = raw
            .iter()
            .map(|t| {
                if t.contains(' ') && t.trim().is_empty() {
                    SPACE.repeat(t.chars().count())
                } else {
                    (*t).to_owned()
                }
            })
            .collect();
        let mut vocab = Vocab::default();
        for (id, token) in tokens.iter().enumerate() {
            let id = u32::try_from(id)
                .map_err(|_| self.tokenizer_error("the vocabulary is too big".to_owned()))?;
            vocab.insert(token.clone(), id); // a later duplicate wins, as in a Python dict
        }
        let merges = merges_from_vocabulary(&tokens, &vocab);
        let unk = "<unk>";
        let mut builder = BPE::builder().vocab_and_merges(vocab, merges).fuse_unk(true).byte_fallback(true);
        if tokens.iter().any(|t| t == unk) {
            builder = builder.unk_token(unk.to_owned());
        }
        let bpe = builder
            .build()
            .map_err(|e| self.tokenizer_error(format!("its vocabulary does not make a BPE model: {e}")))?;

        let mut tokenizer = Tokenizer::new(bpe);
        let normalizer = Replace::new(" ", SPACE)
            .map_err(|e| self.tokenizer_error(format!("the space normalizer: {e}")))?;
        tokenizer.with_normalizer(Some(normalizer));
        let split = Split::new(
            SplitPattern::String(" ".to_owned()),
            SplitDelimiterBehavior::MergedWithPrevious,
            false,
        )
        .map_err(|e| self.tokenizer_error(format!("the space split: {e}")))?;
        tokenizer.with_pre_tokenizer(Some(split));
        let space =
            Replace::new(SPACE, " ").map_err(|e| self.tokenizer_error(format!("the decoder: {e}")))?;
        let decoder = DecoderSequence::new(vec![
            DecoderWrapper::Replace(space),
            DecoderWrapper::ByteFallback(ByteFallback::new()),
            DecoderWrapper::Fuse(Fuse::new()),
        ]);
        tokenizer.with_decoder(Some(decoder));

        let typed = |wanted: i32| {
            raw.iter().zip(&token_types).filter(move |&(_, &ty)| ty == wanted).map(|(token, _)| *token)
        };
        let control: Vec<AddedToken> = typed(CONTROL).map(|t| AddedToken::from(t, true)).collect();
        tokenizer.add_special_tokens(&control);
        let user_defined: Vec<AddedToken> = typed(USER_DEFINED)
            .filter(|t| tokenizer.token_to_id(t).is_some())
            .map(|t| AddedToken::from(t, false).normalized(false))
            .collect();
        tokenizer.add_tokens(&user_defined);
        let mut special = |key: &str| -> Result<Option<(String, u32)>> {
            let Some(id) = self.get_u32(key)? else { return Ok(None) };
            let token = usize::try_from(id).ok().and_then(|i| raw.get(i)).ok_or_else(|| {
                self.tokenizer_error(format!("`{key}` is {id}, past the vocabulary ({} tokens)", raw.len()))
            })?;
            tokenizer.add_special_tokens(&[AddedToken::from(*token, true)]);
            Ok(Some(((*token).to_owned(), tokenizer.token_to_id(token).unwrap_or(id))))
        };
        let bos = special("tokenizer.ggml.bos_token_id")?;
        let eos = special("tokenizer.ggml.eos_token_id")?;
        special("tokenizer.ggml.unknown_token_id")?;
        special("tokenizer.ggml.padding_token_id")?;
        // transformers: a `llama` vocabulary adds BOS unless the file says otherwise.
        let add_bos = self.get_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(true);
        let add_eos = self.get_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
        let template = template(bos.filter(|_| add_bos), eos.filter(|_| add_eos))
            .map_err(|e| self.tokenizer_error(format!("cannot build the BOS/EOS template: {e}")))?;
        tokenizer.with_post_processor(Some(template));
        Ok(tokenizer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_the_token_order_then_the_lengths() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"].map(str::to_owned).to_vec();
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let merges = merges_from_vocabulary(&tokens, &vocab);
        // `abc` (position 5) cuts as ab|c and a|bc, then bc (4), then ab (3); scores -5, -4, -3
        // sorted largest first: ab, bc, then abc's two cuts ordered by left length (ab|c first).
        let expected = [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")];
        let merges: Vec<(&str, &str)> = merges.iter().map(|(l, r)| (l.as_str(), r.as_str())).collect();
        assert_eq!(merges, expected);
    }
}
