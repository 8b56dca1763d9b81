//! Files the service keeps in its data dir (the embedded database, generated secrets): made
//! private as they are created (no window in which a chmod has yet to happen).
use anyhow::Context;
use std::path::Path;

/// The embedded data dir (and any missing parents), readable by this user only (0700).
pub fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating data dir {}", dir.display()))
}

/// Creates `path` empty and private (0600) unless it exists; an existing file is left as is.
pub fn create_private_file(path: &Path) -> anyhow::Result<()> {
    match private_options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// Options that create files 0600 (the mode applies at creation, so there is no moment a
/// file is readable by others).
pub fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}
