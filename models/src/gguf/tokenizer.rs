//! The tokenizer a GGUF file describes in its metadata, built the way Hugging Face transformers
//! builds it (`transformers/integrations/gguf/gguf_tokenizer_mapping.py`: `byte_level_tokenizer`,
//! `add_gguf_special_tokens`, `set_split_regex`; the BOS/EOS template of
//! `TokenizersBackend.update_post_processor`).
//!
//! Here `tokenizer.ggml.model = "gpt2"` (byte-level BPE: GPT-2, Llama 3, Qwen, SmolLM, ...);
//! Gemma's SentencePiece-style vocabularies are built in `sentencepiece.rs`. Metadata read: `tokenizer.ggml.tokens`, `.merges`, `.token_type`, `.pre`,
//! `.bos_token_id`, `.eos_token_id`, `.unknown_token_id`, `.padding_token_id`,
//! `.add_bos_token`, `.add_eos_token`.

use serde_json::json;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use nnsight::{Error, Result};

use super::file::GgufFile;

/// `tokenizer.ggml.token_type` of a control token (`<|endoftext|>`, `<|im_start|>`).
pub(super) const CONTROL: i32 = 3;
/// `tokenizer.ggml.token_type` of a user-defined token (`<think>`): matched whole, not special.
pub(super) const USER_DEFINED: i32 = 4;

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split regex for `tokenizer.ggml.pre`, where transformers has one (`GGUF_PRE_TOKENIZER_SPLITS`);
/// other values keep GPT-2's ByteLevel regex.
fn split_regex(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_SPLIT,
        "qwen35" => QWEN35_SPLIT,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_SPLIT,
        _ => return None,
    })
}

/// GPT-2's `bytes_to_unicode`: the printable character standing for each byte in a byte-level
/// vocabulary (printable Latin-1 bytes stand for themselves; the others get `U+0100` on, in
/// order).
fn byte_chars() -> [char; 256] {
    let mut chars = ['\0'; 256];
    let mut next = 0x100;
    for (byte, slot) in (0..=255u8).zip(chars.iter_mut()) {
        *slot = if matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF) {
            char::from(byte)
        } else {
            next += 1;
            char::from_u32(next - 1).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
    }
    chars
}

impl GgufFile {
    /// The tokenizer in the file's metadata, as Hugging Face transformers builds it from a GGUF
    /// file (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`).
    ///
    /// For `tokenizer.ggml.model = "gpt2"`: a byte-level BPE over `tokenizer.ggml.tokens` and
    /// `.merges` (tokens not spelled in the byte alphabet are re-spelled from their UTF-8 bytes);
    /// GPT-2's ByteLevel pre-tokenizer, or, for the `tokenizer.ggml.pre` values transformers
    /// knows (`llama-bpe`, `qwen2`, `tekken`, ...), their split regex followed by ByteLevel;
    /// control tokens (`token_type` 3, when spelled in the byte alphabet), the BOS, EOS, unknown
    /// and padding tokens and `<|endoftext|>` as special tokens; user-defined tokens (type 4) as
    /// added tokens matched whole; and a template adding the BOS (EOS) token when
    /// `tokenizer.ggml.add_bos_token` (`add_eos_token`) is true.
    ///
    /// One deliberate difference: transformers adds `<|endoftext|>` as a new token when the
    /// vocabulary lacks it (a default of its `GPT2Tokenizer`), giving an id the model does not
    /// have; here it is only made special when the vocabulary has it.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] when the file has no tokenizer, a model other than `gpt2`, no tokens
    /// or merges, a malformed merge, or a special token id past the vocabulary; [`Error::Load`]
    /// when a tokenizer key has the wrong type.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use nnsight_models::gguf::GgufFile;
    ///
    /// let tokenizer = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?.tokenizer()?;
    /// let ids = tokenizer.encode("The capital of France is", true).map_err(|e| nnsight::Error::Tokenizer {
    ///     problem: e.to_string(),
    /// })?;
    /// println!("{:?}", ids.get_ids());
    /// # Ok::<(), nnsight::Error>(())
    /// ```
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        match self.get_str("tokenizer.ggml.model")? {
            Some("gpt2") => self.byte_level_tokenizer(),
            Some("llama")
                if self
                    .get_str("general.architecture")?
                    .is_some_and(|a| super::sentencepiece::GEMMA_ARCHITECTURES.contains(&a)) =>
            {
                self.gemma_tokenizer()
            }
            Some(other) => Err(self.tokenizer_error(format!(
                "its tokenizer model (`tokenizer.ggml.model`) is `{other}` for architecture {:?}; `gpt2` \
                 (byte-level BPE) and Gemma's `llama` vocabularies are supported",
                self.get_str("general.architecture")?.unwrap_or("unknown")
            ))),
            None => Err(self.tokenizer_error("it has no tokenizer (no `tokenizer.ggml.model`)".to_owned())),
        }
    }

    pub(super) fn tokenizer_error(&self, problem: String) -> Error {
        Error::Tokenizer { problem: format!("{}: {problem}", self.path().display()) }
    }

    fn byte_level_tokenizer(&self) -> Result<Tokenizer> {
        let missing = |key: &str| self.tokenizer_error(format!("it has no `{key}`"));
        let tokens =
            self.get_str_array("tokenizer.ggml.tokens")?.ok_or_else(|| missing("tokenizer.ggml.tokens"))?;
        let merges =
            self.get_str_array("tokenizer.ggml.merges")?.ok_or_else(|| missing("tokenizer.ggml.merges"))?;
        let token_types = self.get_i32_array("tokenizer.ggml.token_type")?.unwrap_or_default();
        let chars = byte_chars();
        let in_alphabet = |token: &str| token.chars().all(|c| chars.contains(&c));

        let mut vocab = Vocab::default();
        for (id, token) in tokens.iter().enumerate() {
            let id = u32::try_from(id)
                .map_err(|_| self.tokenizer_error("the vocabulary is too big".to_owned()))?;
            let spelled = if in_alphabet(token) {
                (*token).to_owned()
            } else {
                token.bytes().map(|b| chars[usize::from(b)]).collect()
            };
            vocab.insert(spelled, id); // a later duplicate wins, as in a Python dict
        }
        let merges = merges
            .iter()
            .enumerate()
            .map(|(i, merge)| match merge.split(' ').collect::<Vec<_>>()[..] {
                [left, right] => Ok((left.to_owned(), right.to_owned())),
                _ => Err(self.tokenizer_error(format!(
                    "merge {i} (`{merge}`) is not two tokens separated by a space"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix(String::new())
            .fuse_unk(false)
            .build()
            .map_err(|e| {
                self.tokenizer_error(format!("its vocabulary and merges do not make a BPE model: {e}"))
            })?;

        let mut tokenizer = Tokenizer::new(bpe);
        let pre = self.get_str("tokenizer.ggml.pre")?;
        let pre_tokenizer: PreTokenizerWrapper = match pre.and_then(split_regex) {
            Some(regex) => {
                let split = Split::new(
                    SplitPattern::Regex(regex.to_owned()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| {
                    self.tokenizer_error(format!("the split regex for `{}`: {e}", pre.unwrap_or("")))
                })?;
                Sequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]).into()
            }
            None => ByteLevel::new(false, true, true).into(),
        };
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

        // Special and added tokens, in the order transformers adds them.
        if tokenizer.token_to_id("<|endoftext|>").is_some() {
            tokenizer.add_special_tokens(&[AddedToken::from("<|endoftext|>", true)]);
        }
        let typed = |wanted: i32| {
            tokens.iter().zip(&token_types).filter(move |&(_, &ty)| ty == wanted).map(|(token, _)| *token)
        };
        let control: Vec<AddedToken> =
            typed(CONTROL).filter(|t| in_alphabet(t)).map(|t| AddedToken::from(t, true)).collect();
        tokenizer.add_special_tokens(&control);
        let user_defined: Vec<AddedToken> = typed(USER_DEFINED)
            .filter(|t| tokenizer.token_to_id(t).is_some())
            .map(|t| AddedToken::from(t, false).normalized(false))
            .collect();
        tokenizer.add_tokens(&user_defined);
        let mut special = |key: &str| -> Result<Option<(String, u32)>> {
            let Some(id) = self.get_u32(key)? else { return Ok(None) };
            let token = usize::try_from(id).ok().and_then(|i| tokens.get(i)).ok_or_else(|| {
                self.tokenizer_error(format!(
                    "`{key}` is {id}, past the vocabulary ({} tokens)",
                    tokens.len()
                ))
            })?;
            tokenizer.add_special_tokens(&[AddedToken::from(*token, true)]);
            Ok(Some(((*token).to_owned(), tokenizer.token_to_id(token).unwrap_or(id))))
        };
        let bos = special("tokenizer.ggml.bos_token_id")?;
        let eos = special("tokenizer.ggml.eos_token_id")?;
        special("tokenizer.ggml.unknown_token_id")?;
        special("tokenizer.ggml.padding_token_id")?;

        let add_bos = self.get_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(false);
        let add_eos = self.get_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
        let template = template(bos.filter(|_| add_bos), eos.filter(|_| add_eos))
            .map_err(|e| self.tokenizer_error(format!("cannot build the BOS/EOS template: {e}")))?;
        tokenizer.with_post_processor(Some(template));
        Ok(tokenizer)
    }
}

/// `[bos] $A [eos]` for one sequence, `[bos] $A [eos] [bos] $B [eos]` for a pair (type ids 0
/// and 1), as `TokenizersBackend.update_post_processor` writes it. Built from its serialized form,
/// so that any token text works (the template string syntax splits on spaces and colons).
pub(super) fn template(
    bos: Option<(String, u32)>,
    eos: Option<(String, u32)>,
) -> serde_json::Result<TemplateProcessing> {
    let sequence = |type_id: u32| {
        let mut pieces = Vec::new();
        if let Some((token, _)) = &bos {
            pieces.push(json!({"SpecialToken": {"id": token, "type_id": type_id}}));
        }
        pieces.push(json!({"Sequence": {"id": if type_id == 0 { "A" } else { "B" }, "type_id": type_id}}));
        if let Some((token, _)) = &eos {
            pieces.push(json!({"SpecialToken": {"id": token, "type_id": type_id}}));
        }
        pieces
    };
    let single = sequence(0);
    let pair = [sequence(0), sequence(1)].concat();
    let special_tokens: serde_json::Map<String, serde_json::Value> = bos
        .iter()
        .chain(&eos)
        .map(|(token, id)| (token.clone(), json!({"id": token, "ids": [id], "tokens": [token]})))
        .collect();
    serde_json::from_value(json!({
        "type": "TemplateProcessing",
        "single": single,
        "pair": pair,
        "special_tokens": special_tokens,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_gpt2s() {
        let chars = byte_chars();
        assert_eq!(chars[usize::from(b' ')], 'Ġ');
        assert_eq!(chars[usize::from(b'\n')], 'Ċ');
        assert_eq!(chars[usize::from(b'A')], 'A');
        assert_eq!(chars[0xAD], 'Ń');
        let mut sorted = chars.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
    }

    #[test]
    fn split_regexes_compile() {
        for pre in ["llama-bpe", "tekken", "qwen2", "qwen35", "gpt-4o"] {
            let regex = split_regex(pre).unwrap();
            assert!(
                Split::new(SplitPattern::Regex(regex.to_owned()), SplitDelimiterBehavior::Isolated, false)
                    .is_ok()
            );
        }
        assert_eq!(split_regex("smollm"), None);
    }

    #[test]
    fn templates() {
        let t = template(Some(("<s>".to_owned(), 1)), None).unwrap();
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["single"].as_array().map(Vec::len), Some(2));
        assert_eq!(json["pair"].as_array().map(Vec::len), Some(4));
        assert!(template(None, None).is_ok());
        assert!(template(Some(("a b:c".to_owned(), 1)), Some(("a b:c".to_owned(), 1))).is_ok());
    }
}
