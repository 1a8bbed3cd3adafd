//! `claude-cage install-shim [DIR]`: creates `DIR/claude`, a symlink to this executable, for
//! hosts that can only name an executable (the Python SDK's `cli_path`).

use std::io;
use std::path::{Path, PathBuf};

use crate::cli::InstallShimArgs;

/// The name of the shim: what the SDKs and users expect the Claude Code CLI to be called.
pub const SHIM_NAME: &str = "claude";

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("failed to find this executable")]
    CurrentExe(#[source] io::Error),
    #[error("failed to create {}", .0.display())]
    CreateDir(PathBuf, #[source] io::Error),
    #[error("{} already exists and is not a shim of this claude-cage; use --force to replace it", .0.display())]
    Exists(PathBuf),
    #[error("failed to create the symlink {}", .0.display())]
    Link(PathBuf, #[source] io::Error),
    #[error("no DIR given and $HOME is not set")]
    NoHome,
}

/// The default directory: system-wide as root, per user otherwise.
fn default_dir() -> Result<PathBuf, ShimError> {
    if nix::unistd::Uid::effective().is_root() {
        return Ok(PathBuf::from("/usr/local/lib/claude-cage"));
    }
    let home = std::env::var_os("HOME").ok_or(ShimError::NoHome)?;
    Ok(Path::new(&home).join(".local/lib/claude-cage"))
}

/// Creates the shim and returns its path.
pub fn install(args: &InstallShimArgs) -> Result<PathBuf, ShimError> {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(ShimError::CurrentExe)?;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => default_dir()?,
    };
    std::fs::create_dir_all(&dir).map_err(|e| ShimError::CreateDir(dir.clone(), e))?;
    let link = dir.join(SHIM_NAME);
    if let Ok(meta) = std::fs::symlink_metadata(&link) {
        let ours = meta.file_type().is_symlink()
            && link.canonicalize().ok().as_deref() == Some(exe.as_path());
        if ours {
            return Ok(link);
        }
        if !args.force {
            return Err(ShimError::Exists(link));
        }
        std::fs::remove_file(&link).map_err(|e| ShimError::Link(link.clone(), e))?;
    }
    // Create under a temporary name and rename over, so the shim is never half there.
    let tmp = dir.join(format!(".{SHIM_NAME}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&exe, &tmp).map_err(|e| ShimError::Link(link.clone(), e))?;
    std::fs::rename(&tmp, &link).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ShimError::Link(link.clone(), e)
    })?;
    Ok(link)
}
