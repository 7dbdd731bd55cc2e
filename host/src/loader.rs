//! Loads plugin libraries through the stable ABI.
//!
//! Every library is opened with `lib_header_from_path` + `init_root_module`
//! (never `load_from_directory`, which caches one module per interface type
//! and would silently hand back the first library for all of them). Each
//! failure becomes one paragraph that names the file and says what to do; the
//! full abi_stable layout report goes to the debug log only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError};
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
}

impl LibraryCache {
    /// Loads `name` from `dir` (once; later calls return the loaded one).
    pub fn load(&mut self, dir: &Path, name: &str) -> Result<&LoadedLibrary, String> {
        if !self.libraries.contains_key(name) {
            let lib = load_library(dir, name)?;
            self.libraries.insert(name.to_string(), lib);
        }
        self.libraries
            .get(name)
            .ok_or_else(|| format!("plugin library `{name}` vanished from the cache"))
    }

    pub fn libraries(&self) -> impl Iterator<Item = &LoadedLibrary> {
        self.libraries.values()
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

fn load_library(dir: &Path, name: &str) -> Result<LoadedLibrary, String> {
    let path = library_file(dir, name);
    if !path.is_file() {
        return Err(format!(
            "plugin library `{name}` not found: looked for {}. Build it (`cargo build --release --workspace` puts every \
             shipped plugin next to the scimgate binary) or point `server.plugin_dir` at the folder that holds it.",
            path.display()
        ));
    }
    let header = lib_header_from_path(&path).map_err(|e| explain(&path, name, e))?;
    let module = header
        .init_root_module::<PluginLibRef>()
        .map_err(|e| explain(&path, name, e))?;
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
            library_file(dir, &declared).display()
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
fn explain(path: &Path, name: &str, err: LibraryError) -> String {
    let file = path.display();
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
             scimgate-abi {} (abi_stable 0.11).",
            env!("CARGO_PKG_VERSION")
        ),
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "{file} was built against scimgate-abi {actual_version}, this scimgate has {expected_version}. \
             Rebuild the plugin against this scimgate's `scimgate-abi`."
        ),
        LibraryError::AbiInstability(_) => format!(
            "{file} was built against a different layout of the scimgate plugin types (same version number, \
             different definitions). Rebuild the plugin against this scimgate's `scimgate-abi`; run with \
             SCIMGATE_LOG=debug for abi_stable's full layout report."
        ),
        other => format!("{file} could not be loaded as plugin `{name}`: {other}"),
    };
    tracing::debug!(path = %file, error = %err, "abi_stable load error (full report)");
    message
}
