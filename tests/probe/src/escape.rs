//! `escape-report`: tries to break out of the sandbox in every way a hostile suite might,
//! and writes one JSON object saying which attempts the sandbox allowed.
//!
//! Nothing here is meant to succeed under Phalanx's policy. An attempt that does succeed
//! is reported as `"allowed": true` with what it achieved; a denied one carries the error.

use std::ffi::{CString, OsString};
use std::fs;
use std::io::{self, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{StepResult, json_str, write_file};

/// Where the image keeps a setuid-root copy of the probe.
const SUID_PROBE: &str = "/probe-suid";

/// What one attempt achieved (`Ok`) or why it was denied (`Err`).
type Attempt = Result<String, String>;

pub fn report(path: &OsString, extra: &[OsString]) -> StepResult {
    let mut attempts: Vec<(String, Attempt)> = Vec::new();
    let mut add = |name: &str, a: Attempt| attempts.push((name.to_string(), a));

    let target = Path::new("/target");
    let scratch = format!(".escape-{}", std::process::id());
    add("target_create", create(&target.join(&scratch)));
    add("target_mkdir", mkdir(&target.join(format!("{scratch}.d"))));
    add("target_symlink", symlink(&target.join(format!("{scratch}.l"))));
    match first_file(target) {
        Some(file) => {
            add("target_append", append(&file));
            add("target_truncate", truncate(&file));
            add("target_chmod", chmod(&file));
            add("target_utime", utime(&file));
            add("target_rename", rename(&file));
            add("target_unlink", unlink(&file));
        }
        None => add("target_file_found", Err("no regular file under /target".into())),
    }

    add("capabilities_in_reach", capabilities());
    add("setuid_binary", suid_euid());
    add("setuid_syscall", setuid_root());
    add("mount_tmpfs", mount_tmpfs());
    add("userns_mount", userns_mount());
    add("chroot", chroot());
    add("raw_socket", raw_socket());
    add("mknod", mknod());
    add("chown_root", chown_root());
    add("sysrq_trigger", create_or_open_write(Path::new("/proc/sysrq-trigger")));
    for sock in ["/var/run/docker.sock", "/run/docker.sock"] {
        add(&format!("docker_socket:{sock}"), docker_socket(sock));
    }

    for attempt in extra {
        let text = attempt.to_string_lossy();
        let result = if let Some(p) = text.strip_prefix("read:") {
            read(Path::new(p))
        } else if let Some(addr) = text.strip_prefix("connect:") {
            connect(addr)
        } else if let Some(p) = text.strip_prefix("write:") {
            create(Path::new(p))
        } else {
            return Err(format!("usage: unknown attempt {text:?}"));
        };
        add(&text, result);
    }

    let body: Vec<String> = attempts
        .iter()
        .map(|(name, a)| {
            let (allowed, detail) = match a {
                Ok(d) => (true, d),
                Err(d) => (false, d),
            };
            format!(
                "{{\"name\":{},\"allowed\":{allowed},\"detail\":{}}}",
                json_str(name),
                json_str(detail)
            )
        })
        .collect();
    // SAFETY: geteuid cannot fail.
    let own_euid = unsafe { libc::geteuid() };
    let json = format!(
        "{{\"euid\":{own_euid},\"attempts\":[{}]}}\n",
        body.join(",")
    );
    write_file(Path::new(path), json.as_bytes())
}

fn os(e: io::Error) -> String {
    e.to_string()
}

fn last_os() -> String {
    io::Error::last_os_error().to_string()
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in paths")
}

fn create(p: &Path) -> Attempt {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
        .map(|_| format!("created {}", p.display()))
        .map_err(os)
}

fn create_or_open_write(p: &Path) -> Attempt {
    fs::OpenOptions::new()
        .write(true)
        .open(p)
        .map(|_| format!("opened {} for writing", p.display()))
        .map_err(os)
}

fn mkdir(p: &Path) -> Attempt {
    fs::create_dir(p)
        .map(|()| format!("created {}", p.display()))
        .map_err(os)
}

fn symlink(p: &Path) -> Attempt {
    std::os::unix::fs::symlink("/etc/passwd", p)
        .map(|()| format!("created {}", p.display()))
        .map_err(os)
}

/// The first regular file under `dir`, depth first, in name order.
fn first_file(dir: &Path) -> Option<PathBuf> {
    let mut entries: Vec<_> = fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in &entries {
        let ty = e.file_type().ok()?;
        if ty.is_file() {
            return Some(e.path());
        }
    }
    entries
        .iter()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .find_map(|e| first_file(&e.path()))
}

fn append(p: &Path) -> Attempt {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().append(true).open(p).map_err(os)?;
    f.write_all(b"escaped\n").map_err(os)?;
    Ok(format!("appended to {}", p.display()))
}

fn truncate(p: &Path) -> Attempt {
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(p)
        .map(|_| format!("truncated {}", p.display()))
        .map_err(os)
}

fn chmod(p: &Path) -> Attempt {
    fs::set_permissions(p, fs::Permissions::from_mode(0o777))
        .map(|()| format!("chmod 777 {}", p.display()))
        .map_err(os)
}

fn utime(p: &Path) -> Attempt {
    let f = fs::File::open(p).map_err(os)?;
    f.set_modified(std::time::UNIX_EPOCH)
        .map(|()| format!("set the mtime of {}", p.display()))
        .map_err(os)
}

fn rename(p: &Path) -> Attempt {
    let to = p.with_extension("escaped");
    fs::rename(p, &to)
        .map(|()| format!("renamed {} to {}", p.display(), to.display()))
        .map_err(os)
}

fn unlink(p: &Path) -> Attempt {
    fs::remove_file(p)
        .map(|()| format!("removed {}", p.display()))
        .map_err(os)
}

/// Runs the setuid-root copy of the probe; allowed when it ran with effective uid 0.
fn suid_euid() -> Attempt {
    let meta = fs::metadata(SUID_PROBE).map_err(|e| format!("{SUID_PROBE}: {e}"))?;
    if meta.permissions().mode() & 0o4000 == 0 {
        return Err(format!("{SUID_PROBE} is not setuid (the image is wrong)"));
    }
    let out = Command::new(SUID_PROBE)
        .arg("whoami")
        .output()
        .map_err(|e| format!("running {SUID_PROBE}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let euid = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("euid="))
        .ok_or_else(|| format!("{SUID_PROBE} printed {text:?}"))?;
    if euid == "0" {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Any capability left in the bounding, permitted, effective or ambient set is one a
/// setuid or file-capability binary could hand back to the suite.
fn capabilities() -> Attempt {
    let status = fs::read_to_string("/proc/self/status").map_err(os)?;
    let sets: Vec<String> = ["CapBnd", "CapPrm", "CapEff", "CapAmb"]
        .iter()
        .filter_map(|key| {
            let value = crate::status_field(&status, key)?;
            let bits = u64::from_str_radix(value, 16).ok()?;
            (bits != 0).then(|| format!("{key}={value}"))
        })
        .collect();
    if sets.is_empty() {
        Err("every capability set is empty".into())
    } else {
        Ok(sets.join(" "))
    }
}

fn setuid_root() -> Attempt {
    // SAFETY: setuid only changes credentials; failure is reported through errno.
    if unsafe { libc::setuid(0) } == 0 {
        Ok("setuid(0) succeeded".into())
    } else {
        Err(last_os())
    }
}

fn mount_at(dir: &Path) -> Attempt {
    let _ = fs::create_dir_all(dir);
    let (src, fstype) = (c"tmpfs", c"tmpfs");
    let target = cstr(dir);
    // SAFETY: every pointer is a valid NUL-terminated string; data may be null.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        // SAFETY: as above.
        unsafe { libc::umount(target.as_ptr()) };
        Ok(format!("mounted a tmpfs on {}", dir.display()))
    } else {
        Err(last_os())
    }
}

/// Needs CAP_SYS_ADMIN.
fn mount_tmpfs() -> Attempt {
    mount_at(Path::new(&format!("/tmp/escape-mnt-{}", std::process::id())))
}

/// A new user namespace would grant every capability inside it; done in a child so the
/// probe's own namespaces stay as they were.
fn userns_mount() -> Attempt {
    // SAFETY: the child only makes syscalls and exits with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(last_os());
    }
    if pid == 0 {
        // SAFETY: plain syscalls in the child.
        let code = unsafe {
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                1
            } else {
                match mount_tmpfs() {
                    Ok(_) => 0,
                    Err(_) => 2,
                }
            }
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    match libc::WEXITSTATUS(status) {
        0 => Ok("unshared a user namespace and mounted a tmpfs in it".into()),
        1 => Err("unshare(CLONE_NEWUSER|CLONE_NEWNS) was refused".into()),
        _ => Err("unshared a user namespace, but mounting in it was refused".into()),
    }
}

fn chroot() -> Attempt {
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::chroot(c"/tmp".as_ptr()) } == 0 {
        Ok("chroot(/tmp) succeeded".into())
    } else {
        Err(last_os())
    }
}

fn raw_socket() -> Attempt {
    // SAFETY: creating a socket has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    if fd >= 0 {
        // SAFETY: closing the descriptor just opened.
        unsafe { libc::close(fd) };
        Ok("opened a raw socket".into())
    } else {
        Err(last_os())
    }
}

fn mknod() -> Attempt {
    let p = cstr(Path::new(&format!("/tmp/escape-null-{}", std::process::id())));
    // SAFETY: valid path; makedev has no preconditions.
    let rc = unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    if rc == 0 {
        // SAFETY: valid path.
        unsafe { libc::unlink(p.as_ptr()) };
        Ok("created a character device".into())
    } else {
        Err(last_os())
    }
}

fn chown_root() -> Attempt {
    let path = PathBuf::from(format!("/tmp/escape-chown-{}", std::process::id()));
    fs::write(&path, b"x").map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let result = std::os::unix::fs::chown(&path, Some(0), Some(0))
        .map(|()| "gave a file to root".to_string())
        .map_err(os);
    let _ = fs::remove_file(&path);
    result
}

fn docker_socket(path: &str) -> Attempt {
    std::os::unix::net::UnixStream::connect(path)
        .map(|_| format!("connected to {path}"))
        .map_err(os)
}

fn read(p: &Path) -> Attempt {
    let mut data = Vec::new();
    fs::File::open(p)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map(|n| format!("read {n} bytes: {}", String::from_utf8_lossy(&data)))
        .map_err(os)
}

fn connect(addr: &str) -> Attempt {
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .collect();
    let first = addrs.first().ok_or_else(|| format!("{addr}: no address"))?;
    TcpStream::connect_timeout(first, Duration::from_secs(3))
        .map(|_| format!("connected to {first}"))
        .map_err(os)
}
