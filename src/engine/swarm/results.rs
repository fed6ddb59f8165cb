//! The part of the framed `/results` tar that one result path names, shaped as the Docker
//! archive API shapes a download: entries relative to the path's parent, so the same
//! extractor reads both.

use std::io;

/// The entries of `tar` (whose names start with `results/`, as the wrapper packs it) at or
/// under the absolute `path`, renamed relative to `path`'s parent; `None` when nothing is
/// there.
pub fn subset(tar: &[u8], path: &str) -> io::Result<Option<Vec<u8>>> {
    let wanted = path.trim_matches('/');
    let parent = match wanted.rsplit_once('/') {
        Some((parent, _)) => format!("{parent}/"),
        None => String::new(),
    };
    let mut archive = tar::Archive::new(tar);
    let mut out = tar::Builder::new(Vec::new());
    let mut found = false;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry
            .path()?
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let inside = name == wanted || name.starts_with(&format!("{wanted}/"));
        if !inside {
            continue;
        }
        found = true;
        let renamed = &name[parent.len()..];
        let mut header = entry.header().clone();
        match entry.header().entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry.link_name()?.unwrap_or_default().into_owned();
                out.append_link(&mut header, renamed, target)?;
            }
            tar::EntryType::Directory => {
                out.append_data(&mut header, format!("{renamed}/"), io::empty())?;
            }
            _ => out.append_data(&mut header, renamed, &mut entry)?,
        }
    }
    if !found {
        return Ok(None);
    }
    Ok(Some(out.into_inner()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o1777);
        dir.set_size(0);
        b.append_data(&mut dir.clone(), "results/", io::empty())
            .unwrap();
        b.append_data(&mut dir, "results/sub/", io::empty())
            .unwrap();
        for (name, body) in [("results/report.sarif", "{}"), ("results/sub/a", "a")] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, body.as_bytes()).unwrap();
        }
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        b.append_link(&mut link, "results/out", "/etc/passwd")
            .unwrap();
        b.into_inner().unwrap()
    }

    fn names(tar: &[u8]) -> Vec<String> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_path_is_cut_out_and_named_as_the_archive_api_names_it() {
        let tar = packed();
        let all = subset(&tar, "/results").unwrap().unwrap();
        assert_eq!(
            names(&all),
            [
                "results/",
                "results/sub/",
                "results/report.sarif",
                "results/sub/a",
                "results/out"
            ]
        );
        let one = subset(&tar, "/results/report.sarif").unwrap().unwrap();
        assert_eq!(names(&one), ["report.sarif"]);
        let sub = subset(&tar, "/results/sub").unwrap().unwrap();
        assert_eq!(names(&sub), ["sub/", "sub/a"]);
        assert_eq!(subset(&tar, "/results/absent").unwrap(), None);
        assert_eq!(subset(&tar, "/results/su").unwrap(), None);
    }

    #[test]
    fn links_travel_as_links_for_the_extractor_to_refuse() {
        let out = subset(&packed(), "/results/out").unwrap().unwrap();
        let mut archive = tar::Archive::new(&out[..]);
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.header().entry_type(), tar::EntryType::Symlink);
    }
}
