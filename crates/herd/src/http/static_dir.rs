//! A directory served as static files: request paths mapped under a root that they cannot
//! leave, neither with `..` (plain or percent-encoded) nor through a symbolic link.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use super::{file, Handler, Request, Response};

/// Serves the files under a root directory: `GET` and `HEAD` with everything
/// [`Response::file`] does (validators, `304`, one range, `Content-Type`, sendfile(2)).
///
/// The request path is percent-decoded once, then split on `/`; empty and `.` segments are
/// skipped. What cannot name a file under the root is refused before the file system is
/// asked: a `..` segment, a NUL byte or a backslash (`400 Bad Request`). The file is then
/// opened relative to the root with `openat2(RESOLVE_BENEATH)`, so the kernel refuses any
/// resolution that leaves the root (`403 Forbidden`): a symbolic link inside the root to a
/// file inside it is followed when it is relative (`docs -> ../shared/docs` from a
/// subdirectory), and refused when it points outside, or is absolute (even to a place
/// inside the root), or goes through `/proc` magic links. On a kernel without `openat2`
/// (before Linux 5.6, or a sandbox that hides it) the path is resolved with `realpath` and
/// must stay under the root's own; that check is not atomic with the open.
///
/// A directory is answered with its index file (`index.html` by default, see
/// [`index`](Self::index)); a directory asked without its trailing slash is redirected
/// (`301`) to it, so that the index's relative links work. There is no listing: a directory
/// without an index is `404`, as is anything that is not a regular file (a FIFO, a device).
/// Other methods get `405` with `Allow: GET, HEAD`. Files whose names begin with a dot are
/// served like others.
///
/// ```no_run
/// use herd::http::{Router, StaticDir};
/// use herd::{Http, Request, Response};
///
/// # fn main() -> std::io::Result<()> {
/// // Everything under ./public, at the root of the site:
/// let site = Http::new(StaticDir::new("public")?);
/// // Or beside other routes, under /assets/:
/// let app = Router::new()
///     .get("/", |_req: &Request<'_>, res: &mut Response| {
///         res.body("home\n");
///     })
///     .files("/assets", StaticDir::new("public")?);
/// # let _ = (site, app);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct StaticDir {
    /// The root, opened as a path (`O_PATH`): what `openat2` resolves beneath.
    root: OwnedFd,
    /// The root's canonical path, for the `realpath` fallback and for messages.
    root_path: PathBuf,
    index: Option<String>,
    /// The part of request paths before the served path (see [`Router::files`](super::Router::files)).
    prefix: String,
}

impl StaticDir {
    /// Serve the directory `root` (relative paths are taken from the current directory, now).
    ///
    /// # Errors
    /// When `root` does not exist, is not a directory, or cannot be opened: the error names
    /// the path.
    pub fn new(root: impl AsRef<Path>) -> io::Result<StaticDir> {
        let root = root.as_ref();
        let context = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("static directory {}: {e}", root.display()),
            )
        };
        let root_path = root.canonicalize().map_err(context)?;
        let fd = nix::fcntl::open(
            &root_path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| context(e.into()))?;
        Ok(StaticDir {
            root: fd,
            root_path,
            index: Some("index.html".into()),
            prefix: String::new(),
        })
    }

    /// The file that answers for a directory, or `None` for no index (a directory is then
    /// `404`). Default: `index.html`.
    pub fn index(mut self, name: Option<&str>) -> Self {
        self.index = name.map(str::to_string);
        self
    }

    /// Serve request paths that begin with `prefix` (a path such as `/assets`, without a
    /// trailing slash), mapped to the root without it; other paths are `404`.
    /// [`Router::files`](super::Router::files) sets it. Default: none (the whole path maps
    /// to the root).
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.trim_end_matches('/').to_string();
        self
    }

    /// Open what the request path `rel` (below the root, already checked) names, with its
    /// metadata; or the status that answers for it.
    fn open(&self, rel: &Path) -> Result<(File, Metadata), u16> {
        let f = self.open_beneath(rel)?;
        match f.metadata() {
            Ok(meta) => Ok((f, meta)),
            Err(e) => Err(file::error_status(&e, rel)),
        }
    }

    /// Open `rel` without leaving the root.
    fn open_beneath(&self, rel: &Path) -> Result<File, u16> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        match nix::fcntl::openat2(&self.root, rel, how) {
            Ok(fd) => Ok(File::from(fd)),
            // The resolution left the root (a `..` of a symbolic link, an absolute link, a
            // magic link).
            Err(Errno::EXDEV | Errno::ELOOP) => Err(403),
            Err(Errno::ENOSYS) => self.open_resolved(rel),
            Err(e) => Err(file::error_status(&e.into(), &self.root_path.join(rel))),
        }
    }

    /// Without `openat2`: resolve every link with `realpath`, then check the result.
    fn open_resolved(&self, rel: &Path) -> Result<File, u16> {
        let full = self.root_path.join(rel);
        let real = full
            .canonicalize()
            .map_err(|e| file::error_status(&e, &full))?;
        if !real.starts_with(&self.root_path) {
            return Err(403);
        }
        file::open(&real).map_err(|e| file::error_status(&e, &real))
    }
}

/// The path below the root that the (percent-encoded) request path `raw` names, or the
/// status that refuses it: `400` for `..`, NUL or a backslash, before or after decoding.
pub(crate) fn relative_path(raw: &str) -> Result<PathBuf, u16> {
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    if decoded.iter().any(|&b| b == 0 || b == b'\\') {
        return Err(400);
    }
    let mut rel = PathBuf::new();
    for segment in decoded.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => return Err(400),
            name => rel.push(OsStr::from_bytes(name)),
        }
    }
    if rel.as_os_str().is_empty() {
        rel.push(".");
    }
    Ok(rel)
}

impl Handler for StaticDir {
    fn call(&self, req: &Request<'_>, res: &mut Response) {
        if !matches!(req.method(), "GET" | "HEAD") {
            res.status(405).header("Allow", "GET, HEAD");
            return;
        }
        let path = req.path();
        let Some(raw) = path.strip_prefix(self.prefix.as_str()) else {
            res.status(404);
            return;
        };
        if !(raw.is_empty() || raw.starts_with('/')) {
            // `/assetsfoo` under the prefix `/assets`.
            res.status(404);
            return;
        }
        let rel = match relative_path(raw) {
            Ok(rel) => rel,
            Err(status) => {
                res.status(status);
                return;
            }
        };
        let (f, meta) = match self.open(&rel) {
            Ok(found) => found,
            Err(status) => {
                res.status(status);
                return;
            }
        };
        if !meta.is_dir() {
            return file::serve(req, res, f, &meta, &rel);
        }
        if !path.ends_with('/') {
            let mut location = format!("{path}/");
            if let Some(query) = req.query() {
                location.push('?');
                location.push_str(query);
            }
            res.status(301).header("Location", location);
            return;
        }
        let Some(index) = &self.index else {
            res.status(404);
            return;
        };
        let rel = rel.join(index);
        match self.open(&rel) {
            Ok((f, meta)) => file::serve(req, res, f, &meta, &rel),
            Err(status) => {
                res.status(status);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{relative_path, StaticDir};
    use std::path::Path;

    /// The `realpath` fallback (kernels without `openat2`) on a real directory: links out of
    /// the root are refused, links that stay inside are followed.
    #[test]
    fn without_openat2_links_are_checked_after_resolving() {
        let base = std::env::temp_dir().join(format!("herd-static-dir-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(base.join("secret.txt"), b"secret").unwrap();
        std::fs::write(root.join("sub/page.txt"), b"page").unwrap();
        let link = |target: &str, name: &str| {
            std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        };
        link("../secret.txt", "out");
        link("/etc/passwd", "passwd");
        link("sub/page.txt", "in");
        let dir = StaticDir::new(&root).unwrap();
        let open = |rel: &str| dir.open_resolved(Path::new(rel)).map(|_| ());
        let results = [
            open("out"),
            open("passwd"),
            open("in"),
            open("sub/page.txt"),
            open("missing"),
        ];
        let _ = std::fs::remove_dir_all(&base);
        assert_eq!(results, [Err(403), Err(403), Ok(()), Ok(()), Err(404)]);
    }

    #[test]
    fn request_paths() {
        let ok: &[(&str, &str)] = &[
            ("/", "."),
            ("", "."),
            ("/a.txt", "a.txt"),
            ("//a//b/./c", "a/b/c"),
            ("/dir/", "dir"),
            ("/a%20b.txt", "a b.txt"),
            ("/a%2fb", "a/b"),
            // Decoded once: a file literally named `%2e%2e` (it will not be there).
            ("/%252e%252e/x", "%2e%2e/x"),
            ("/..a/b..", "..a/b.."),
            ("/caf%C3%A9", "café"),
        ];
        for (raw, want) in ok {
            assert_eq!(relative_path(raw).as_deref(), Ok(Path::new(want)), "{raw}");
        }
        for raw in [
            "/../etc/passwd",
            "/..",
            "/a/../../b",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/",
            "/..%2fetc",
            "/.%2e/x",
            "/%2e%2e%2f%2e%2e%2fetc",
            "/a\\..\\b",
            "/%2e%2e%5cetc",
            "/a%00.txt",
            "/a%5c",
        ] {
            assert_eq!(relative_path(raw), Err(400), "{raw}");
        }
    }
}
