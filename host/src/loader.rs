//! Loads plugin libraries through the stable ABI.
//!
//! Every library is opened with `lib_header_from_path` + `init_root_module`
//! (never `load_from_directory`, which caches one module per interface type
//! and would silently hand back the first library for all of them). Each
//! failure becomes one paragraph that names the file and says what to do; the
//! full abi_stable layout report goes to the debug log only. A layout
//! mismatch is walked (abi_stable's structured errors) to name the type and
//! the field or variant that differ.
//!
//! Libraries are never unloaded: the cache records each file's identity
//! (size, modification time, a hash of its bytes) and warns once per change
//! when a reload finds that a loaded library was replaced on disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use abi_stable::abi_stability::abi_checking::{
    check_layout_compatibility, AbiInstability, AbiInstabilityError, AbiInstabilityErrors,
};
use abi_stable::library::{lib_header_from_path, LibHeader, LibraryError, RootModule};
use abi_stable::type_layout::{TLData, TLFieldOrFunction, TypeLayout};
use abi_stable::StableAbi;
use scimgate_abi::ffi::{ComponentDescriptor, PluginLibRef};
use scimgate_abi::{ABI_EPOCH, MIN_SUPPORTED_EPOCH};

/// One loaded plugin library.
#[derive(Clone)]
pub struct LoadedLibrary {
    /// The name used in `use = "name/component"`.
    pub name: String,
    pub path: PathBuf,
    pub version: String,
    pub abi_epoch: u32,
    pub module: PluginLibRef,
    pub components: Vec<ComponentDescriptor>,
}

impl LoadedLibrary {
    pub fn component(&self, name: &str) -> Option<&ComponentDescriptor> {
        self.components.iter().find(|c| c.name.as_str() == name)
    }
}

/// Libraries loaded so far, by name. Libraries are never unloaded: a changed
/// `.so` needs a restart, a changed config does not.
#[derive(Default)]
pub struct LibraryCache {
    libraries: HashMap<String, LoadedLibrary>,
    files: HashMap<String, FileWatch>,
}

impl LibraryCache {
    /// Loads `name` from `dir` (once; later calls return the loaded one, and
    /// warn once per change when its file was replaced since).
    pub fn load(&mut self, plugins: &PluginPath, name: &str) -> Result<&LoadedLibrary, String> {
        if !self.libraries.contains_key(name) {
            let lib = load_library(plugins, name)?;
            if let Some(watch) = FileWatch::start(&lib.path) {
                self.files.insert(name.to_string(), watch);
            }
            self.libraries.insert(name.to_string(), lib);
        } else if let Some(watch) = self.files.get_mut(name) {
            let path = self.libraries[name].path.clone();
            if let Some(changed) = watch.check(&path) {
                tracing::warn!(
                    library = name,
                    path = %changed.display(),
                    "plugin library file {} changed on disk since it was loaded; scimgate keeps running the \
                     build it loaded (libraries cannot be unloaded): restart scimgate to use the new build",
                    changed.display()
                );
            }
        }
        self.libraries
            .get(name)
            .ok_or_else(|| format!("plugin library `{name}` vanished from the cache"))
    }

    pub fn libraries(&self) -> impl Iterator<Item = &LoadedLibrary> {
        self.libraries.values()
    }
}

/// What identifies the bytes of a library file.
#[derive(Clone, PartialEq, Eq)]
struct FileIdentity {
    size: u64,
    modified: Option<SystemTime>,
    hash: u64,
}

/// The identity of a loaded library's file, and of the last version of it
/// a reload examined (so that one change warns once).
struct FileWatch {
    size: u64,
    modified: Option<SystemTime>,
    /// The loaded file's hash: `None` when it changed before it could be
    /// hashed (then size and modification time decide).
    hash: Arc<OnceLock<Option<u64>>>,
    hashing: Option<std::thread::JoinHandle<()>>,
    last_seen: Option<FileIdentity>,
}

/// How long the loaded file's hash waits: a debug build of the shipped
/// plugins is hundreds of megabytes, and neither startup nor a short-lived
/// process (`scimgate validate`) should pay for hashing it. A reload that
/// finds the file changed wakes the hashing at once.
const HASH_DELAY: Duration = Duration::from_secs(10);

impl FileWatch {
    fn start(path: &Path) -> Option<FileWatch> {
        let meta = std::fs::metadata(path).ok()?;
        let (size, modified) = (meta.len(), meta.modified().ok());
        let hash = Arc::new(OnceLock::new());
        let (slot, file) = (hash.clone(), path.to_path_buf());
        let hashing = std::thread::Builder::new()
            .name("plugin-file-hash".into())
            .spawn(move || {
                std::thread::park_timeout(HASH_DELAY);
                let _ = slot.set(hash_if_unchanged(&file, size, modified));
            })
            .ok();
        Some(FileWatch {
            size,
            modified,
            hash,
            hashing,
            last_seen: None,
        })
    }

    fn loaded_hash(&mut self) -> Option<u64> {
        if let Some(handle) = self.hashing.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
        self.hash.get().copied().flatten()
    }

    /// `Some(path)` when the file at `path` holds other bytes than the loaded
    /// library and this version of it was not reported yet. A file that is
    /// gone or unreadable is not a change (the loaded code keeps running).
    fn check(&mut self, path: &Path) -> Option<PathBuf> {
        let meta = std::fs::metadata(path).ok()?;
        let (size, modified) = (meta.len(), meta.modified().ok());
        let unchanged = match &self.last_seen {
            Some(seen) => seen.size == size && seen.modified == modified,
            None => self.size == size && self.modified == modified,
        };
        if unchanged {
            return None;
        }
        let loaded = self.loaded_hash();
        let hash = hash_file(path)?;
        let reported = self
            .last_seen
            .as_ref()
            .is_some_and(|seen| seen.hash == hash);
        self.last_seen = Some(FileIdentity {
            size,
            modified,
            hash,
        });
        let differs = loaded != Some(hash);
        (differs && !reported).then(|| path.to_path_buf())
    }
}

/// The file's hash, if it still has the size and modification time it had
/// when it was loaded (before and after hashing).
fn hash_if_unchanged(path: &Path, size: u64, modified: Option<SystemTime>) -> Option<u64> {
    let same = || {
        std::fs::metadata(path)
            .is_ok_and(|meta| meta.len() == size && meta.modified().ok() == modified)
    };
    if !same() {
        return None;
    }
    let hash = hash_file(path)?;
    same().then_some(hash)
}

/// A fast 64-bit hash of a file's bytes (FNV-1a over 8-byte words): it
/// tells builds apart, it is not a security check.
fn hash_file(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            return Some(hash);
        }
        let mut words = buf[..n].chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            hash = (hash ^ u64::from_le_bytes(w)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        for &b in words.remainder() {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The folders plugin libraries are looked up in, in order
/// (`server.plugin_dir`, one folder or a list): a library is loaded from the
/// first folder that has its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginPath {
    dirs: Vec<PathBuf>,
}

impl PluginPath {
    /// `dirs` must not be empty (the config defaults it to the binary's folder).
    pub fn new(dirs: Vec<PathBuf>) -> PluginPath {
        PluginPath { dirs }
    }

    /// `server.plugin_dir` as configured, or `default` when it is not set.
    pub fn or_default(dirs: &[PathBuf], default: impl FnOnce() -> PathBuf) -> PluginPath {
        if dirs.is_empty() {
            PluginPath::single(default())
        } else {
            PluginPath::new(dirs.to_vec())
        }
    }

    pub fn single(dir: impl Into<PathBuf>) -> PluginPath {
        PluginPath {
            dirs: vec![dir.into()],
        }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The file `name` loads from: the first folder that has it.
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        self.dirs
            .iter()
            .map(|dir| library_file(dir, name))
            .find(|path| path.is_file())
    }

    /// Every library name in any of the folders, sorted, once.
    pub fn library_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.dirs.iter().flat_map(|d| library_names_in(d)).collect();
        names.sort();
        names.dedup();
        names
    }
}

impl std::fmt::Display for PluginPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        f.write_str(&shown.join(", "))
    }
}

/// The file a library name maps to: `scim-server` → `libscim_server.so`.
pub fn library_file(dir: &Path, name: &str) -> PathBuf {
    let stem = name.replace('-', "_");
    dir.join(format!(
        "{}{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// Every plugin library file in a folder (for `scimgate plugins` without a
/// config): names derived from `lib*.so`.
pub fn library_names_in(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return names;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if let Some(stem) = file
            .strip_prefix(std::env::consts::DLL_PREFIX)
            .and_then(|f| f.strip_suffix(std::env::consts::DLL_SUFFIX))
        {
            names.push(stem.replace('_', "-"));
        }
    }
    names.sort();
    names
}

fn load_library(plugins: &PluginPath, name: &str) -> Result<LoadedLibrary, String> {
    let Some(path) = plugins.find(name) else {
        let file = library_file(Path::new(""), name);
        return Err(format!(
            "plugin library `{name}` not found: looked for {} in {plugins}. Build it (`cargo build --release --workspace` \
             puts every shipped plugin next to the scimgate binary) or add the folder that holds it to `server.plugin_dir`.",
            file.display()
        ));
    };
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let header = lib_header_from_path(&path).map_err(|e| explain(&path, name, e, None))?;
    let module = header
        .init_root_module::<PluginLibRef>()
        .map_err(|e| explain(&path, name, e, Some(header)))?;
    let epoch = (module.abi_epoch())();
    if epoch > ABI_EPOCH {
        return Err(format!(
            "{} was built for scimgate plugin ABI epoch {epoch}, but this scimgate understands epochs \
             {MIN_SUPPORTED_EPOCH} to {ABI_EPOCH}. Upgrade scimgate, or rebuild the plugin against this \
             scimgate's `scimgate-abi`.",
            path.display()
        ));
    }
    if epoch < MIN_SUPPORTED_EPOCH {
        return Err(format!(
            "{} was built for scimgate plugin ABI epoch {epoch}, which this scimgate no longer loads \
             (oldest supported: {MIN_SUPPORTED_EPOCH}). Rebuild the plugin against this scimgate's `scimgate-abi`.",
            path.display()
        ));
    }
    let declared = (module.library_name())().to_string();
    if declared != name {
        return Err(format!(
            "{} declares itself as library `{declared}`, but was loaded as `{name}`. Rename the file to {} \
             or write `use = \"{declared}/…\"`.",
            path.display(),
            library_file(&dir, &declared).display()
        ));
    }
    let components: Vec<ComponentDescriptor> = (module.components())().into_iter().collect();
    let mut seen = std::collections::HashSet::new();
    for c in &components {
        if !seen.insert(c.name.as_str()) {
            return Err(format!(
                "{} exports two components named `{}`. Component names must be unique within a library; \
                 this is a bug in the plugin.",
                path.display(),
                c.name
            ));
        }
    }
    tracing::debug!(library = name, path = %path.display(), components = components.len(), "plugin library loaded");
    Ok(LoadedLibrary {
        name: name.to_string(),
        version: (module.library_version())().to_string(),
        path,
        abi_epoch: epoch,
        module,
        components,
    })
}

/// One paragraph per failure kind; details only in the debug log.
fn explain(path: &Path, name: &str, err: LibraryError, header: Option<&LibHeader>) -> String {
    let file = path.display();
    let ours = <PluginLibRef as RootModule>::VERSION_STRINGS.version;
    let message = match &err {
        LibraryError::OpenError { err, .. } => format!(
            "{file} could not be opened as a shared library ({err}). Is it a plugin built for this platform \
             (a `cdylib`)?"
        ),
        LibraryError::GetSymbolError { .. } => format!(
            "{file} is a shared library but not a scimgate plugin: it exports no plugin root module. \
             Plugins are built with `scimgate_abi::export_plugin!`."
        ),
        LibraryError::InvalidAbiHeader(_) => format!(
            "{file} was built with an incompatible version of the abi_stable crate. Rebuild it against \
             scimgate-abi {ours} (abi_stable 0.11)."
        ),
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "{file} was built against scimgate-abi {actual_version}, but this scimgate has scimgate-abi \
             {expected_version}, a version it cannot load. Rebuild the plugin against this scimgate's \
             `scimgate-abi` ({expected_version})."
        ),
        LibraryError::AbiInstability(_) => {
            let found = header.and_then(LibHeader::layout).and_then(|layout| {
                check_layout_compatibility(<PluginLibRef as StableAbi>::LAYOUT, layout).err()
            });
            match found.as_ref().map(describe_instability) {
                Some(Difference::Version { theirs }) => format!(
                    "{file} was built against scimgate-abi {theirs}, but this scimgate has scimgate-abi \
                     {ours}, whose types it cannot load. Rebuild the plugin against this scimgate's \
                     `scimgate-abi` ({ours})."
                ),
                Some(Difference::Layout(what)) => format!(
                    "{file} was built against a different layout of the scimgate plugin types: {what}. \
                     Both say scimgate-abi {ours}, so one of them was built from a modified copy of \
                     `scimgate-abi` (a changed contract must raise its version and its ABI epoch). \
                     Rebuild the plugin against this scimgate's `scimgate-abi`; SCIMGATE_LOG=debug shows \
                     abi_stable's full layout report."
                ),
                None => format!(
                    "{file} was built against a different layout of the scimgate plugin types (both say \
                     scimgate-abi {ours}, so one of them was built from a modified copy of it). Rebuild the \
                     plugin against this scimgate's `scimgate-abi`; SCIMGATE_LOG=debug shows abi_stable's \
                     full layout report."
                ),
            }
        }
        other => format!("{file} could not be loaded as plugin `{name}`: {other}"),
    };
    tracing::debug!(path = %file, error = %err, "abi_stable load error (full report)");
    message
}

/// What abi_stable's layout check found, in the words of the contract.
enum Difference {
    /// The types come from another version of `scimgate-abi`.
    Version { theirs: String },
    /// Same version, other definitions: which type and which field or
    /// variant.
    Layout(String),
}

fn describe_instability(errors: &AbiInstabilityErrors) -> Difference {
    let all = || errors.errors.iter().flat_map(|e| e.errs.iter());
    if let Some(AbiInstability::PackageVersion(versions)) =
        all().find(|err| matches!(err, AbiInstability::PackageVersion(_)))
    {
        return Difference::Version {
            theirs: versions.found.version.to_string(),
        };
    }
    let mut said: Vec<String> = Vec::new();
    for error in errors.errors.iter() {
        for err in error.errs.iter() {
            if let Some(text) = describe_one(error, err) {
                if !said.contains(&text) {
                    said.push(text);
                }
            }
        }
    }
    if said.is_empty() {
        let kinds: Vec<String> = all().map(|e| format!("{e:?}")).collect();
        tracing::debug!(differences = ?kinds, "undescribed layout differences");
        return Difference::Layout("the checker found a difference it could not name".into());
    }
    let more = said.len().saturating_sub(3);
    said.truncate(3);
    let mut text = said.join("; ");
    if more > 0 {
        text.push_str(&format!(" (and {more} more)"));
    }
    Difference::Layout(text)
}

/// The type an error is about: the type of the innermost field or function
/// on abi_stable's stack (`None` at the root module).
fn innermost(
    error: &AbiInstabilityError,
) -> (Option<&'static TypeLayout>, Option<&'static TypeLayout>) {
    let mut expected = None;
    let mut found = None;
    for entry in error.stack_trace.iter() {
        if let (TLFieldOrFunction::Field(e), TLFieldOrFunction::Field(f)) =
            (&entry.expected, &entry.found)
        {
            expected = Some(e.layout());
            found = Some(f.layout());
        }
    }
    (expected, found)
}

/// `Request.error_style` style path of the fields leading to the error.
fn field_path(error: &AbiInstabilityError) -> Option<String> {
    let mut owner: &'static TypeLayout = <PluginLibRef as StableAbi>::LAYOUT;
    let mut last = None;
    for entry in error.stack_trace.iter() {
        match &entry.expected {
            TLFieldOrFunction::Field(field) => {
                last = Some(format!(
                    "field `{}` of `{}`",
                    field.name(),
                    type_name(owner)
                ));
                owner = field.layout();
            }
            TLFieldOrFunction::Function(function) => {
                last = Some(format!("function `{}`", function.name));
            }
        }
    }
    last
}

fn type_name(layout: &'static TypeLayout) -> &'static str {
    layout.name()
}

fn variants(layout: &'static TypeLayout) -> Vec<&'static str> {
    match layout.data() {
        TLData::Enum(data) => data.variant_names_iter().collect(),
        _ => Vec::new(),
    }
}

fn describe_one(error: &AbiInstabilityError, err: &AbiInstability) -> Option<String> {
    let (expected, found) = innermost(error);
    let ty = expected.map_or("the plugin root module", type_name);
    let ty = format!("`{ty}`");
    let text = match err {
        AbiInstability::TooManyVariants(_) | AbiInstability::UnexpectedVariant(_) => {
            let (Some(expected), Some(found)) = (expected, found) else {
                return Some(format!("{ty} has other variants than this scimgate's"));
            };
            let ours = variants(expected);
            let unknown: Vec<&str> = variants(found)
                .into_iter()
                .filter(|v| !ours.contains(v))
                .collect();
            match unknown.as_slice() {
                [] => format!(
                    "{ty} has other variants than this scimgate's ({})",
                    ours.join(", ")
                ),
                [one] => format!("{ty} has variant `{one}` that this scimgate does not know"),
                many => format!(
                    "{ty} has variants {} that this scimgate does not know",
                    many.iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        AbiInstability::UnexpectedField(fields) => format!(
            "field `{}` of {ty} differs (this scimgate has `{}` there)",
            fields.found.name(),
            fields.expected.name()
        ),
        AbiInstability::FieldCountMismatch(counts) => format!(
            "{ty} has {} fields where this scimgate's has {}",
            counts.found, counts.expected
        ),
        AbiInstability::Name(_) | AbiInstability::Package(_) => match field_path(error) {
            Some(at) => format!("{at} has another type"),
            None => format!("{ty} is another type"),
        },
        AbiInstability::Size(_) | AbiInstability::Alignment(_) => match field_path(error) {
            Some(at) => format!("{at} differs in size"),
            None => format!("{ty} differs in size"),
        },
        AbiInstability::MismatchedPrefixSize(_)
        | AbiInstability::MismatchedPrefixConditionality(_) => {
            format!("the prefix (required functions) of {ty} differs")
        }
        AbiInstability::EnumDiscriminant(_) => format!("the discriminants of {ty} differ"),
        AbiInstability::ReprAttr(_) => format!("the `#[repr]` of {ty} differs"),
        _ => match field_path(error) {
            Some(at) => format!("{at} differs"),
            None => format!("{ty} differs"),
        },
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(tag: &str, bytes: &[u8]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("scimgate-loader-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("libx.so");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Replaces the file the way a build does (aside, then renamed over),
    /// with a modification time that surely differs.
    fn replace(path: &Path, bytes: &[u8], seconds_later: u64) {
        let aside = path.with_extension("new");
        std::fs::write(&aside, bytes).unwrap();
        let file = std::fs::File::options().write(true).open(&aside).unwrap();
        let base = std::fs::metadata(path).unwrap().modified().unwrap();
        file.set_modified(base + Duration::from_secs(seconds_later))
            .unwrap();
        std::fs::rename(&aside, path).unwrap();
    }

    #[test]
    fn a_changed_library_file_is_reported_once_per_change() {
        let path = temp_file("changed", b"first build");
        let mut watch = FileWatch::start(&path).unwrap();
        assert_eq!(watch.check(&path), None, "unchanged");
        replace(&path, b"second build!", 1);
        assert_eq!(watch.check(&path), Some(path.clone()));
        assert_eq!(watch.check(&path), None, "the same change again");
        replace(&path, b"third build!!", 2);
        assert_eq!(watch.check(&path), Some(path.clone()), "a new change");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn same_bytes_with_a_new_time_are_not_a_change() {
        let path = temp_file("touched", b"one build");
        let mut watch = FileWatch::start(&path).unwrap();
        // Let the loaded file be hashed before it is touched.
        assert!(watch.loaded_hash().is_some());
        replace(&path, b"one build", 5);
        assert_eq!(watch.check(&path), None);
        // A file that is gone is not a change either.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(watch.check(&path), None);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
