//! `probe`: a scriptable container workload for Phalanx's integration tests.
//!
//! Steps run in order, separated by `--`:
//!
//! ```text
//! probe write /results/a.txt hello -- print "hi" -- exit 3
//! ```
//!
//! A failing step prints `probe: <step>: <why>` to stderr and exits 100; bad usage exits 2.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const USAGE: &str = "\
usage: probe STEP [ARGS…] [-- STEP [ARGS…]]…

steps:
  exit N               exit with code N (later steps do not run)
  sleep SECS           sleep (fractions allowed)
  print TEXT…          print TEXT (args joined by spaces) and a newline to stdout
  eprint TEXT…         the same to stderr
  nasty                print ANSI escapes, NUL, BEL, `]]>`, XML specials and invalid UTF-8
                       to both streams
  spam BYTES           print exactly BYTES bytes of text lines to stdout (suffix k/m/g = KiB/MiB/GiB)
  espam BYTES          the same to stderr
  ignore-term          ignore SIGTERM from now on
  write PATH TEXT…     write TEXT (no newline added) to PATH, creating parent directories
  stamp PATH           write the current unix time in milliseconds and a newline to PATH
  cat PATH             copy the file at PATH to stdout
  symlink TARGET LINK  create a symbolic link LINK -> TARGET
  policy-report PATH   write a JSON report of what the sandbox allows to PATH (`-`: stdout)
  alloc BYTES          allocate BYTES of memory and touch every page (suffix k/m/g), then
                       print how much it got
  forkbomb             fork as fast as possible, every child forking too; when fork fails,
                       print how many forks succeeded, how many processes there are and the
                       error, and exit 1
  fill PATH BYTES      write BYTES bytes to the file PATH (suffix k/m/g)
  whoami               print the real and effective user and group ids
  print-env NAME       print `NAME=<value>` to stdout and stderr, each in two writes with a
                       pause between, so the value arrives split across chunks
  escape-report PATH [ATTEMPT…]
                       try to break out of the sandbox and write a JSON report of every
                       attempt to PATH; always tried: modify /target, gain privileges
                       (setuid-root /probe-suid, setuid(0), CAP_SYS_ADMIN mount, user
                       namespace, raw socket, mknod, chown, capabilities left in any
                       set), reach the Docker socket;
                       ATTEMPT adds `read:PATH` (read a file), `connect:HOST:PORT` (open a
                       TCP connection), `write:PATH` (create a file)
  listen PORT SECS     accept TCP connections on PORT for SECS seconds, printing each peer
  help                 print this text";

/// Exit code of a step that failed (distinct from anything a test asks for with `exit`).
const STEP_FAILED: i32 = 100;

mod escape;

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        eprintln!("{USAGE}");
        std::process::exit(2);
    }
    for step in args.split(|a| a == "--") {
        let name = step.first().map(|s| s.to_string_lossy().into_owned());
        if let Err(why) = run(step) {
            let _ = io::stdout().flush();
            eprintln!(
                "probe: {}: {why}",
                name.as_deref().unwrap_or("(empty step)")
            );
            std::process::exit(if why.starts_with("usage") {
                2
            } else {
                STEP_FAILED
            });
        }
    }
    let _ = io::stdout().flush();
}

type StepResult = Result<(), String>;

fn run(step: &[OsString]) -> StepResult {
    let (name, args) = step.split_first().ok_or("usage: empty step between `--`")?;
    match (name.to_string_lossy().as_ref(), args) {
        ("exit", [code]) => exit(code),
        ("sleep", [secs]) => sleep(secs),
        ("print", text) => print(&mut io::stdout(), text),
        ("eprint", text) => print(&mut io::stderr(), text),
        ("nasty", []) => nasty(),
        ("spam", [n]) => spam(&mut io::stdout(), n),
        ("espam", [n]) => spam(&mut io::stderr(), n),
        ("ignore-term", []) => ignore_term(),
        ("write", [path, text @ ..]) => write_file(Path::new(path), &join(text)),
        ("stamp", [path]) => stamp(Path::new(path)),
        ("cat", [path]) => cat(Path::new(path)),
        ("symlink", [target, link]) => std::os::unix::fs::symlink(target, link).map_err(err),
        ("policy-report", [path]) => policy_report(path),
        ("alloc", [n]) => alloc(n),
        ("forkbomb", []) => forkbomb(),
        ("fill", [path, n]) => fill(Path::new(path), n),
        ("whoami", []) => whoami(),
        ("print-env", [name]) => print_env(name),
        ("escape-report", [path, attempts @ ..]) => escape::report(path, attempts),
        ("listen", [port, secs]) => listen(port, secs),
        ("help", []) => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("usage: unknown step or wrong arguments\n{USAGE}")),
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn arg<T: std::str::FromStr>(a: &OsString, what: &str) -> Result<T, String> {
    a.to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("usage: expected {what}, got {a:?}"))
}

fn join(text: &[OsString]) -> Vec<u8> {
    text.iter()
        .map(|t| t.as_bytes())
        .collect::<Vec<_>>()
        .join(&b' ')
}

fn exit(code: &OsString) -> StepResult {
    let code: i32 = arg(code, "an exit code")?;
    let _ = io::stdout().flush();
    std::process::exit(code)
}

fn sleep(secs: &OsString) -> StepResult {
    let secs: f64 = arg(secs, "seconds")?;
    let d = Duration::try_from_secs_f64(secs).map_err(err)?;
    std::thread::sleep(d);
    Ok(())
}

fn print(out: &mut dyn Write, text: &[OsString]) -> StepResult {
    let mut line = join(text);
    line.push(b'\n');
    // Flushed per step, so the two streams interleave in the order the steps ran.
    out.write_all(&line).and_then(|_| out.flush()).map_err(err)
}

fn nasty() -> StepResult {
    let out: &[u8] = b"nasty stdout: \x1b[31mred\x1b[0m \x1b]0;title\x07 bell:\x07 nul:\0 \
        cdata:]]> xml:<&\"'> ff:\x0c cr:\r invalid:\xff\xfe\xc3\x28 surrogate:\xed\xa0\x80 end\n";
    let errs: &[u8] = b"nasty stderr: \x1b[1;33mwarn\x1b[0m nul:\0 vt:\x0b ]]>]]> \
        </system-err> invalid:\x80\xbf\xf8 end\n";
    print_raw(&mut io::stdout(), out)?;
    print_raw(&mut io::stderr(), errs)
}

fn print_raw(out: &mut dyn Write, bytes: &[u8]) -> StepResult {
    out.write_all(bytes).and_then(|_| out.flush()).map_err(err)
}

fn parse_size(a: &OsString) -> Result<u64, String> {
    let s = a.to_str().unwrap_or("").to_ascii_lowercase();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, 'k')) => (&s[..i], 1 << 10),
        Some((i, 'm')) => (&s[..i], 1 << 20),
        Some((i, 'g')) => (&s[..i], 1 << 30),
        _ => (s.as_str(), 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("usage: expected a byte count, got {a:?}"))?;
    Ok(n * unit)
}

/// Writes exactly `n` bytes of 64-byte lines, each saying at which byte offset it starts,
/// so a test can tell which part of the output it is looking at.
fn spam(out: &mut dyn Write, n: &OsString) -> StepResult {
    let total = parse_size(n)?;
    let mut block = String::with_capacity(64 << 10);
    let mut done = 0u64;
    while done < total {
        block.clear();
        while block.len() < (64 << 10) {
            let offset = done + block.len() as u64;
            let _ = writeln!(block, "spam offset {offset:>14} {}", "x".repeat(35));
        }
        let n = (total - done).min(block.len() as u64) as usize;
        out.write_all(&block.as_bytes()[..n]).map_err(err)?;
        done += n as u64;
    }
    out.flush().map_err(err)
}

fn ignore_term() -> StepResult {
    // SAFETY: installing SIG_IGN touches no Rust state; no other thread exists.
    let prev = unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    if prev == libc::SIG_ERR {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(())
}

fn write_file(path: &Path, data: &[u8]) -> StepResult {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    fs::write(path, data).map_err(|e| format!("{}: {e}", path.display()))
}

fn stamp(path: &Path) -> StepResult {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(err)?
        .as_millis();
    write_file(path, format!("{ms}\n").as_bytes())
}

fn cat(path: &Path) -> StepResult {
    let mut data = Vec::new();
    fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    print_raw(&mut io::stdout(), &data)
}

fn policy_report(path: &OsString) -> StepResult {
    let json = report_json();
    if path == "-" {
        return print_raw(&mut io::stdout(), format!("{json}\n").as_bytes());
    }
    write_file(Path::new(path), format!("{json}\n").as_bytes())
}

/// One line of JSON: what the sandbox let this process do. Every probe that writes cleans
/// up after itself, so the report does not change what it reports on.
fn report_json() -> String {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let fields = [
        ("uid", uid.to_string()),
        ("gid", gid.to_string()),
        ("write_root", can_write(Path::new("/")).to_string()),
        ("write_target", can_write(Path::new("/target")).to_string()),
        ("write_tmp", can_write(Path::new("/tmp")).to_string()),
        (
            "write_results",
            can_write(Path::new("/results")).to_string(),
        ),
        ("net_interfaces", json_strings(&net_interfaces())),
        ("cap_eff", json_opt_str(status_field(&status, "CapEff"))),
        (
            "no_new_privs",
            (status_field(&status, "NoNewPrivs") == Some("1")).to_string(),
        ),
        (
            "seccomp",
            status_field(&status, "Seccomp")
                .unwrap_or("null")
                .to_string(),
        ),
        (
            "can_read_target",
            fs::read_dir("/target").is_ok().to_string(),
        ),
        ("docker_socket_exists", docker_socket_exists().to_string()),
    ];
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

fn can_write(dir: &Path) -> bool {
    let probe = dir.join(format!(".probe-write-test-{}", std::process::id()));
    let created = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .is_ok();
    if created {
        let _ = fs::remove_file(&probe);
    }
    created
}

/// Interface names from sysfs (which shows the container's network namespace), falling back
/// to /proc/net/dev.
fn net_interfaces() -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir("/sys/class/net") {
        Ok(dir) => dir
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => fs::read_to_string("/proc/net/dev")
            .unwrap_or_default()
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|n| n.trim().to_string())
            .collect(),
    };
    names.sort();
    names
}

fn docker_socket_exists() -> bool {
    ["/var/run/docker.sock", "/run/docker.sock"]
        .iter()
        .any(|p| fs::symlink_metadata(p).is_ok())
}

pub(crate) fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_opt_str(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_string(), json_str)
}

fn json_strings(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| json_str(s)).collect();
    format!("[{}]", quoted.join(","))
}

/// Allocates `n` bytes and writes to every page, so the memory is really used (an untouched
/// allocation costs nothing and would never meet the limit).
fn alloc(n: &OsString) -> StepResult {
    let total = parse_size(n)? as usize;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut got = 0usize;
    while got < total {
        let size = (total - got).min(16 << 20);
        let mut block = vec![0u8; size];
        for i in (0..size).step_by(4096) {
            block[i] = 1;
        }
        got += size;
        blocks.push(block);
    }
    println!("allocated {got} bytes in {} blocks", blocks.len());
    Ok(())
}

/// A fork bomb that ends by itself: every process forks as fast as it can; a process whose
/// fork fails parks in `pause()`. The first process reports once its own fork fails and
/// exits 1, which ends the container and with it every parked child.
fn forkbomb() -> StepResult {
    let _ = io::stdout().flush();
    let mut forks: u64 = 0;
    loop {
        // SAFETY: the child only calls async-signal-safe functions (fork, pause, _exit).
        match unsafe { libc::fork() } {
            -1 => {
                let e = io::Error::last_os_error();
                let running = processes();
                println!("fork failed after {forks} forks, with {running} processes: {e}");
                let _ = io::stdout().flush();
                std::process::exit(1);
            }
            0 => child_bomb(),
            _ => forks += 1,
        }
    }
}

/// Processes in this pid namespace (the container's), counted in /proc.
fn processes() -> usize {
    fs::read_dir("/proc").map_or(0, |dir| {
        dir.filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            .count()
    })
}

fn child_bomb() -> ! {
    // SAFETY: as above; parent and child both go on forking.
    while unsafe { libc::fork() } != -1 {}
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

fn fill(path: &Path, n: &OsString) -> StepResult {
    let total = parse_size(n)?;
    let mut file = fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let block = vec![b'f'; 1 << 20];
    let mut done = 0u64;
    while done < total {
        let n = (total - done).min(block.len() as u64) as usize;
        file.write_all(&block[..n]).map_err(err)?;
        done += n as u64;
    }
    Ok(())
}

fn whoami() -> StepResult {
    // SAFETY: these calls cannot fail and touch no memory.
    let (uid, euid, gid, egid) =
        unsafe { (libc::getuid(), libc::geteuid(), libc::getgid(), libc::getegid()) };
    println!("uid={uid} euid={euid} gid={gid} egid={egid}");
    Ok(())
}

fn print_env(name: &OsString) -> StepResult {
    let value = std::env::var_os(name).unwrap_or_default();
    let value = value.as_bytes();
    let (first, second) = value.split_at(value.len() / 2);
    let name = name.as_bytes();
    for out in [&mut io::stdout() as &mut dyn Write, &mut io::stderr()] {
        let mut line = name.to_vec();
        line.push(b'=');
        line.extend_from_slice(first);
        print_raw(out, &line)?;
        // Long enough for the engine to ship the first half as a frame of its own.
        std::thread::sleep(Duration::from_millis(300));
        let mut rest = second.to_vec();
        rest.extend_from_slice(b" (end)\n");
        print_raw(out, &rest)?;
    }
    Ok(())
}

fn listen(port: &OsString, secs: &OsString) -> StepResult {
    let port: u16 = arg(port, "a port")?;
    let secs: f64 = arg(secs, "seconds")?;
    let listener = std::net::TcpListener::bind(("0.0.0.0", port)).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    println!("listening on {port}");
    let _ = io::stdout().flush();
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(secs);
    while std::time::Instant::now() < deadline {
        match listener.accept() {
            Ok((_, peer)) => {
                println!("accepted {peer}");
                let _ = io::stdout().flush();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}
