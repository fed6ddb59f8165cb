//! `/results` is writable for any image and user, on a read-only root filesystem, whichever
//! way the engine makes it so: the cheap copy of the image's own empty, writable `/results`,
//! or the prepared volume for every other image. The hidden `PHALANX_TIMINGS` output says
//! which way was taken, so the cheap way cannot silently disappear.

use crate::support;

use std::path::Path;

use serde_json::Value;
use support::rootfs::content_hash;
use support::{Rootfs, Workspace, build_probe, unique};

/// What the image has at `/results`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Layout {
    /// Empty, mode 1777, root-owned.
    WorldWritable,
    /// Empty, mode 0755, owned by 10001:10001.
    OwnedBy10001,
    /// No `/results` at all.
    Missing,
    /// Mode 1777 but holding a file the image shipped.
    Stale,
}

impl Layout {
    fn tag(self) -> &'static str {
        match self {
            Layout::WorldWritable => "world-writable",
            Layout::OwnedBy10001 => "owned-10001",
            Layout::Missing => "missing",
            Layout::Stale => "stale",
        }
    }
}

/// The probe binary in an image with `/results` laid out as asked; imported once per tag.
pub(crate) async fn image(layout: Layout) -> String {
    let binary = tokio::fs::read(build_probe().await).await.unwrap();
    let image = format!(
        "phalanx-test/perf-results:{}-{}",
        layout.tag(),
        content_hash(&[&binary])
    );
    let docker = support::docker().await;
    if docker.inspect_image(&image).await.is_ok() {
        return image;
    }
    let mut rootfs = Rootfs::for_probe(&binary);
    match layout {
        Layout::WorldWritable => rootfs.dir("results", 0o1777, 0),
        Layout::OwnedBy10001 => rootfs.dir("results", 0o755, 10001),
        Layout::Missing => &mut rootfs,
        Layout::Stale => {
            rootfs
                .dir("results", 0o1777, 0)
                .file("results/stale.txt", 0o644, b"from the image")
        }
    };
    rootfs.import(&docker, &image, Vec::new()).await;
    image
}

struct Ran {
    json: Value,
    stderr: String,
}

/// Runs one suite that writes a policy report and a file into `/results`, as `user`.
async fn run_as(ws: &Workspace, image: &str, user: &str) -> (String, Ran) {
    let name = unique("results");
    ws.suite(
        &name,
        &format!(
            "image = {image:?}\n\
             command = [\"/probe\", \"policy-report\", \"/results/policy.json\", \"--\", \
             \"write\", \"/results/out/found.txt\", \"written\"]\n\
             [policy]\nuser = {user:?}\n"
        ),
    );
    let output = ws
        .phalanx([
            "run",
            "--progress",
            "none",
            "--target",
            "target",
            "--suite",
            &name,
        ])
        .env("PHALANX_TIMINGS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(ws.reports_dir().join("run.json"))
            .unwrap_or_else(|e| panic!("no run.json ({e}); stderr:\n{stderr}")),
    )
    .unwrap();
    let run_id = json["run_id"].as_str().unwrap().to_string();
    assert!(
        support::containers_with_label(&run_id).await.is_empty(),
        "containers left"
    );
    assert!(
        support::volumes_with_label(&run_id).await.is_empty(),
        "volumes left"
    );
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    (name, Ran { json, stderr })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The suite wrote its files under a read-only root, as `uid`, and they came back.
fn assert_written(ws: &Workspace, name: &str, ran: &Ran, uid: u64) {
    let results = ws.reports_dir().join("results").join(name);
    assert_eq!(read(&results.join("out/found.txt")), "written");
    let report: Value = serde_json::from_str(&read(&results.join("policy.json"))).unwrap();
    assert_eq!(report["uid"], uid, "{report}");
    assert_eq!(report["write_results"], true, "{report}");
    assert_eq!(report["write_root"], false, "{report}");
    let suite = &ran.json["suites"][0];
    assert_eq!(suite["outcome"], "passed", "{suite}");
}

fn prepared(ran: &Ran) -> bool {
    ran.stderr.contains("phalanx-timing prep-create ")
}

#[tokio::test]
async fn an_empty_world_writable_results_dir_is_used_as_it_is() {
    let image = image(Layout::WorldWritable).await;
    let ws = Workspace::new();
    let (name, ran) = run_as(&ws, &image, "65534:65534").await;
    assert_written(&ws, &name, &ran, 65534);
    assert!(!prepared(&ran), "no preparation needed:\n{}", ran.stderr);
}

#[tokio::test]
async fn an_image_without_results_gets_a_prepared_volume() {
    let image = image(Layout::Missing).await;
    let ws = Workspace::new();
    let (name, ran) = run_as(&ws, &image, "65534:65534").await;
    assert_written(&ws, &name, &ran, 65534);
    assert!(prepared(&ran), "{}", ran.stderr);
}

#[tokio::test]
async fn what_the_image_ships_in_results_never_passes_for_a_result() {
    let image = image(Layout::Stale).await;
    let ws = Workspace::new();
    let (name, ran) = run_as(&ws, &image, "65534:65534").await;
    assert_written(&ws, &name, &ran, 65534);
    assert!(prepared(&ran), "{}", ran.stderr);
    let stale = ws.reports_dir().join(format!("results/{name}/stale.txt"));
    assert!(
        !stale.exists(),
        "the image's own file came back as a result"
    );
}

#[tokio::test]
async fn a_results_dir_owned_by_the_suite_user_is_used_only_by_that_user() {
    let image = image(Layout::OwnedBy10001).await;
    let ws = Workspace::new();
    let (owner, ran) = run_as(&ws, &image, "10001:10001").await;
    assert_written(&ws, &owner, &ran, 10001);
    assert!(!prepared(&ran), "the owner can write:\n{}", ran.stderr);

    let ws = Workspace::new();
    let (other, ran) = run_as(&ws, &image, "65534:65534").await;
    assert_written(&ws, &other, &ran, 65534);
    assert!(prepared(&ran), "nobody cannot write a 0755 dir of 10001");
}

/// Runs one suite with `steps` and `results_path`, reading results from the volume on this
/// host where possible, or always through the engine's archive API.
async fn collected(image: &str, steps: &str, results_path: &str, via_api: bool) -> Value {
    let ws = Workspace::new();
    let name = "collect";
    ws.suite(
        name,
        &format!("image = {image:?}\ncommand = [{steps}]\n[results]\npath = {results_path:?}\n"),
    );
    let output = ws
        .phalanx(["run", "--progress", "none", "--target", "target"])
        .env("PHALANX_RESULTS_VIA_API", if via_api { "1" } else { "0" })
        .env("PHALANX_TIMINGS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    // Only root may read the volumes on the host; then the archive API is never called.
    let api_called = stderr.contains("phalanx-timing download ");
    assert_eq!(api_called, via_api || !running_as_root(), "{stderr}");
    let json: Value = serde_json::from_str(&read(&ws.reports_dir().join("run.json"))).unwrap();
    let suite = json["suites"][0].clone();
    let mut files = Vec::new();
    if let Some(dir) = suite["results_dir"].as_str() {
        for file in suite["result_files"].as_array().unwrap() {
            let rel = file.as_str().unwrap();
            let text = read(&ws.root().join(dir).join(rel));
            files.push(serde_json::json!([rel, text]));
        }
    }
    serde_json::json!({
        "found": suite["results_dir"].is_string(),
        "files": files,
        "warnings": suite["result_warnings"],
        "outcome": suite["outcome"],
    })
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[tokio::test]
async fn results_read_on_this_host_match_the_engine_archive() {
    let image = image(Layout::WorldWritable).await;
    let steps = r#""/probe", "write", "/results/a/b/deep.txt", "deep", "--",
        "write", "/results/top.txt", "top", "--",
        "symlink", "/etc/passwd", "/results/escape", "--",
        "symlink", "a", "/results/a-link""#;
    for path in [
        "/results",
        "/results/a",
        "/results/top.txt",
        "/results/none",
    ] {
        let local = collected(&image, steps, path, false).await;
        let api = collected(&image, steps, path, true).await;
        assert_eq!(local, api, "{path}");
    }
    let all = collected(&image, steps, "/results", false).await;
    assert_eq!(
        all["files"],
        serde_json::json!([["a/b/deep.txt", "deep"], ["top.txt", "top"]]),
        "{all}"
    );
    assert_eq!(all["warnings"].as_array().unwrap().len(), 2, "{all}");
    let missing = collected(&image, steps, "/results/none", false).await;
    assert_eq!(missing["found"], false, "{missing}");
}
