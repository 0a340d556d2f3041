//! A bounds-checked little-endian cursor over the bytes of a GGUF file. Every read says, when the
//! file is too short, where it needed bytes; callers add what they were reading.

use super::value::{Value, ValueType};

/// How deep arrays of arrays may nest (llama.cpp writes none; a corrupt file could nest deep
/// enough to overflow the stack).
const MAX_ARRAY_DEPTH: usize = 8;

/// A position in a byte slice; reads advance it and fail, with a message, past the end.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// The offset of the next byte to read.
    pub(super) fn position(&self) -> usize {
        self.pos
    }

    /// How many bytes are left after the position.
    pub(super) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes.
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let slice =
            self.pos.checked_add(n).and_then(|end| self.bytes.get(self.pos..end)).ok_or_else(|| {
                format!(
                    "{n} bytes are needed at byte {}, but the file ends at byte {}",
                    self.pos,
                    self.bytes.len()
                )
            })?;
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self.take(N)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    pub(super) fn u8(&mut self) -> Result<u8, String> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    pub(super) fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A `u64` count or length, as `usize`.
    pub(super) fn count(&mut self) -> Result<usize, String> {
        let at = self.pos;
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| format!("the count {n} at byte {at} does not fit in memory"))
    }

    /// A string: `u64` byte length, then UTF-8 bytes.
    pub(super) fn string(&mut self) -> Result<String, String> {
        let at = self.pos;
        let len = self.count()?;
        if len > self.remaining() {
            return Err(format!(
                "the string at byte {at} claims {len} bytes, but only {} remain in the file",
                self.remaining()
            ));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| format!("the string at byte {at} is not UTF-8 ({e})"))
    }

    /// A value type id.
    pub(super) fn value_type(&mut self) -> Result<ValueType, String> {
        let at = self.pos;
        let id = self.u32()?;
        ValueType::from_id(id).ok_or_else(|| format!("unknown value type {id} at byte {at}"))
    }

    /// A value of type `ty`.
    pub(super) fn value(&mut self, ty: ValueType) -> Result<Value, String> {
        self.value_at_depth(ty, 0)
    }

    fn value_at_depth(&mut self, ty: ValueType, depth: usize) -> Result<Value, String> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.u8()?),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array()?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array()?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array()?)),
            ValueType::U32 => Value::U32(self.u32()?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array()?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array()?)),
            ValueType::Bool => Value::Bool(self.u8()? != 0),
            ValueType::String => Value::String(self.string()?),
            ValueType::U64 => Value::U64(self.u64()?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array()?)),
            ValueType::Array => {
                let at = self.pos;
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(format!("arrays nest more than {MAX_ARRAY_DEPTH} deep at byte {at}"));
                }
                let element = self.value_type()?;
                let count = self.count()?;
                if count > self.remaining() / element.min_size() {
                    return Err(format!(
                        "the array at byte {at} claims {count} {element} values, but only {} bytes remain \
                         in the file",
                        self.remaining()
                    ));
                }
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value_at_depth(element, depth + 1)?);
                }
                Value::Array(element, items)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_errors() {
        let mut r = Reader::new(&[1, 0, 0]);
        assert_eq!(r.u8(), Ok(1));
        let e = r.u32().unwrap_err();
        assert!(e.contains("4 bytes are needed at byte 1"), "{e}");
        assert_eq!(r.position(), 1);
    }

    #[test]
    fn huge_lengths_are_errors() {
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        let e = Reader::new(&bytes).string().unwrap_err();
        assert!(e.contains("claims") || e.contains("does not fit"), "{e}");

        // an array of u64::MAX / 2 strings
        let mut bytes = 8u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        let e = Reader::new(&bytes).value(ValueType::Array).unwrap_err();
        assert!(e.contains("claims") || e.contains("does not fit"), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let mut bytes = Vec::new();
        for _ in 0..100 {
            bytes.extend_from_slice(&9u32.to_le_bytes());
            bytes.extend_from_slice(&1u64.to_le_bytes());
        }
        let e = Reader::new(&bytes).value(ValueType::Array).unwrap_err();
        assert!(e.contains("nest"), "{e}");
    }

    #[test]
    fn strings_and_arrays() {
        let mut bytes = 5u32.to_le_bytes().to_vec(); // I32 elements
        bytes.extend_from_slice(&2u64.to_le_bytes());
        bytes.extend_from_slice(&(-1i32).to_le_bytes());
        bytes.extend_from_slice(&7i32.to_le_bytes());
        bytes.extend_from_slice(&2u64.to_le_bytes());
        bytes.extend_from_slice("é".as_bytes());
        let mut r = Reader::new(&bytes);
        assert_eq!(
            r.value(ValueType::Array),
            Ok(Value::Array(ValueType::I32, vec![Value::I32(-1), Value::I32(7)]))
        );
        assert_eq!(r.string().as_deref(), Ok("é"));
        assert_eq!(r.remaining(), 0);
    }
}
