//! The element types of GGUF tensors (`enum ggml_type` in llama.cpp's `ggml.h`) and their block
//! sizes.

use std::fmt;

/// The type of a GGUF tensor's elements: a float type or a block quantization.
///
/// Quantized types store values in blocks of [`block_size`](Self::block_size) values taking
/// [`type_size`](Self::type_size) bytes. Every type llama.cpp defines is named here, so that
/// errors can name it; [`can_dequantize`](Self::can_dequantize) says which ones
/// `nnsight_models::gguf::GgufFile::tensor_f32` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)] // llama.cpp's names: `Q4_0` reads better than `Q40`
#[non_exhaustive]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// 4-bit, blocks of 32: an f16 scale and 16 bytes of nibbles (values `q - 8`).
    Q4_0,
    /// 4-bit, blocks of 32: an f16 scale, an f16 minimum and 16 bytes of nibbles.
    Q4_1,
    /// 5-bit, blocks of 32 (not dequantized here).
    Q5_0,
    /// 5-bit with minimum, blocks of 32 (not dequantized here).
    Q5_1,
    /// 8-bit, blocks of 32: an f16 scale and 32 signed bytes.
    Q8_0,
    /// 8-bit with sums, blocks of 32 (an intermediate type; not dequantized here).
    Q8_1,
    /// 2-bit K-quant, super-blocks of 256 (not dequantized here).
    Q2K,
    /// 3-bit K-quant, super-blocks of 256 (not dequantized here).
    Q3K,
    /// 4-bit K-quant, super-blocks of 256 with 6-bit scales and minimums per 32 values.
    Q4K,
    /// 5-bit K-quant, super-blocks of 256 with 6-bit scales and minimums per 32 values.
    Q5K,
    /// 6-bit K-quant, super-blocks of 256 with an 8-bit scale per 16 values.
    Q6K,
    /// 8-bit K-quant (an intermediate type; not dequantized here).
    Q8K,
    /// `IQ2_XXS` (not dequantized here).
    Iq2Xxs,
    /// `IQ2_XS` (not dequantized here).
    Iq2Xs,
    /// `IQ3_XXS` (not dequantized here).
    Iq3Xxs,
    /// `IQ1_S` (not dequantized here).
    Iq1S,
    /// `IQ4_NL` (not dequantized here).
    Iq4Nl,
    /// `IQ3_S` (not dequantized here).
    Iq3S,
    /// `IQ2_S` (not dequantized here).
    Iq2S,
    /// `IQ4_XS` (not dequantized here).
    Iq4Xs,
    /// 8-bit integer (not read here).
    I8,
    /// 16-bit integer (not read here).
    I16,
    /// 32-bit integer (not read here).
    I32,
    /// 64-bit integer (not read here).
    I64,
    /// 64-bit float (not read here).
    F64,
    /// `IQ1_M` (not dequantized here).
    Iq1M,
    /// bfloat16.
    BF16,
    /// Ternary `TQ1_0` (not dequantized here).
    Tq1_0,
    /// Ternary `TQ2_0` (not dequantized here).
    Tq2_0,
    /// `MXFP4` (not dequantized here).
    Mxfp4,
    /// `NVFP4` (not dequantized here).
    Nvfp4,
    /// `Q1_0` (not dequantized here).
    Q1_0,
    /// A type id this crate does not know.
    Unknown(u32),
}

/// Values per block and bytes per block of the K-quants' super-blocks.
pub(crate) const QK_K: usize = 256;

impl GgmlType {
    /// The type with GGUF id `id` (`Unknown(id)` when it is not one llama.cpp defines).
    pub fn from_id(id: u32) -> Self {
        use GgmlType::*;
        match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2K,
            11 => Q3K,
            12 => Q4K,
            13 => Q5K,
            14 => Q6K,
            15 => Q8K,
            16 => Iq2Xxs,
            17 => Iq2Xs,
            18 => Iq3Xxs,
            19 => Iq1S,
            20 => Iq4Nl,
            21 => Iq3S,
            22 => Iq2S,
            23 => Iq4Xs,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => Iq1M,
            30 => BF16,
            34 => Tq1_0,
            35 => Tq2_0,
            39 => Mxfp4,
            40 => Nvfp4,
            41 => Q1_0,
            other => Unknown(other),
        }
    }

    /// The GGUF id of the type.
    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2K => 10,
            Q3K => 11,
            Q4K => 12,
            Q5K => 13,
            Q6K => 14,
            Q8K => 15,
            Iq2Xxs => 16,
            Iq2Xs => 17,
            Iq3Xxs => 18,
            Iq1S => 19,
            Iq4Nl => 20,
            Iq3S => 21,
            Iq2S => 22,
            Iq4Xs => 23,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            Iq1M => 29,
            BF16 => 30,
            Tq1_0 => 34,
            Tq2_0 => 35,
            Mxfp4 => 39,
            Nvfp4 => 40,
            Q1_0 => 41,
            Unknown(id) => id,
        }
    }

    /// The name llama.cpp gives the type (`"Q4_K"`, `"BF16"`, ...); `"type 77"` for unknown ones.
    pub fn name(self) -> String {
        use GgmlType::*;
        let name = match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2K => "Q2_K",
            Q3K => "Q3_K",
            Q4K => "Q4_K",
            Q5K => "Q5_K",
            Q6K => "Q6_K",
            Q8K => "Q8_K",
            Iq2Xxs => "IQ2_XXS",
            Iq2Xs => "IQ2_XS",
            Iq3Xxs => "IQ3_XXS",
            Iq1S => "IQ1_S",
            Iq4Nl => "IQ4_NL",
            Iq3S => "IQ3_S",
            Iq2S => "IQ2_S",
            Iq4Xs => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            Iq1M => "IQ1_M",
            BF16 => "BF16",
            Tq1_0 => "TQ1_0",
            Tq2_0 => "TQ2_0",
            Mxfp4 => "MXFP4",
            Nvfp4 => "NVFP4",
            Q1_0 => "Q1_0",
            Unknown(id) => return format!("type {id}"),
        };
        name.to_owned()
    }

    /// Values per block (1 for the float and integer types); `None` for an unknown type.
    pub fn block_size(self) -> Option<usize> {
        self.layout().map(|(values, _)| values)
    }

    /// Bytes per block; `None` for an unknown type.
    pub fn type_size(self) -> Option<usize> {
        self.layout().map(|(_, bytes)| bytes)
    }

    /// Whether `nnsight_models::gguf::GgufFile::tensor_f32` can read tensors of this type:
    /// F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K and Q6_K.
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(self, F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q4K | Q5K | Q6K)
    }

    /// The names of the types [`can_dequantize`](Self::can_dequantize) accepts, for messages.
    pub const DEQUANTIZABLE: &'static str = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K";

    /// (values per block, bytes per block), as `GGML_QUANT_SIZES` in llama.cpp's gguf-py.
    fn layout(self) -> Option<(usize, usize)> {
        use GgmlType::*;
        let layout = match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 => (32, 2 + 16),
            Q4_1 => (32, 2 + 2 + 16),
            Q5_0 => (32, 2 + 4 + 16),
            Q5_1 => (32, 2 + 2 + 4 + 16),
            Q8_0 => (32, 2 + 32),
            Q8_1 => (32, 4 + 4 + 32),
            Q2K => (QK_K, 2 + 2 + QK_K / 16 + QK_K / 4),
            Q3K => (QK_K, 2 + QK_K / 4 + QK_K / 8 + 12),
            Q4K => (QK_K, 2 + 2 + QK_K / 2 + 12),
            Q5K => (QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12),
            Q6K => (QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16),
            Q8K => (QK_K, 4 + QK_K + QK_K / 8),
            Iq2Xxs => (QK_K, 2 + QK_K / 4),
            Iq2Xs => (QK_K, 2 + QK_K / 4 + QK_K / 32),
            Iq3Xxs => (QK_K, 2 + QK_K / 4 + QK_K / 8),
            Iq1S => (QK_K, 2 + QK_K / 8 + QK_K / 16),
            Iq4Nl => (32, 2 + 16),
            Iq3S => (QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4),
            Iq2S => (QK_K, 2 + QK_K / 4 + QK_K / 16),
            Iq4Xs => (QK_K, 2 + 2 + QK_K / 2 + QK_K / 64),
            Iq1M => (QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32),
            Tq1_0 => (QK_K, 2 + 4 * 13),
            Tq2_0 => (QK_K, 2 + 64),
            Mxfp4 => (32, 1 + 16),
            Nvfp4 => (64, 4 + 32),
            Q1_0 => (128, 2 + 16),
            Unknown(_) => return None,
        };
        Some(layout)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for id in 0..64 {
            assert_eq!(GgmlType::from_id(id).id(), id);
        }
        assert_eq!(GgmlType::from_id(4), GgmlType::Unknown(4));
        assert_eq!(GgmlType::from_id(12).to_string(), "Q4_K");
        assert_eq!(GgmlType::Unknown(77).to_string(), "type 77");
    }

    #[test]
    fn block_layouts() {
        assert_eq!(GgmlType::Q4K.type_size(), Some(144));
        assert_eq!(GgmlType::Q5K.type_size(), Some(176));
        assert_eq!(GgmlType::Q6K.type_size(), Some(210));
        assert_eq!(GgmlType::Q8_0.type_size(), Some(34));
        assert_eq!(GgmlType::Q4_1.block_size(), Some(32));
        assert_eq!(GgmlType::Unknown(99).block_size(), None);
    }
}
