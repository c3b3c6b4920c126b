//! Language packs: the dictionaries the reference pipeline reads Japanese and
//! Mandarin with (UniDic through `unidic-lite`, misaki's word list, pypinyin's
//! readings), fetched from the Python Package Index where they are published, so
//! voxpool reads text exactly as the reference does without shipping 300 MB of
//! dictionaries in its binary. `voxpool pull kokoro` runs this; [`crate::text`]
//! reads the files.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::text::settings::PackFile;

/// The public index's simple API (PEP 503/691), as `pip --index-url` takes it.
pub const DEFAULT_INDEX: &str = "https://pypi.org/simple";

/// Why a pack could not be fetched; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error(
        "cannot reach the package index at {index} ({reason}); fetching language packs needs \
         network access. Offline, run `voxpool pull kokoro` on a machine that has it and copy \
         the language-packs folder ({folder})"
    )]
    Unreachable {
        index: String,
        reason: String,
        folder: PathBuf,
    },
    #[error("the package index has no {package} {version} ({reason})")]
    NotPublished {
        package: String,
        version: String,
        reason: String,
    },
    #[error("{archive}: checksum mismatch (SHA-256 {got}, the index says {want}); retry")]
    Checksum {
        archive: String,
        got: String,
        want: String,
    },
    #[error("{archive} has no file ending in {member}")]
    MissingMember { archive: String, member: String },
    #[error("cannot write the language packs into {folder}: {reason}")]
    Disk { folder: PathBuf, reason: String },
    #[error("{archive} is not a readable archive: {reason}")]
    Archive { archive: String, reason: String },
}

/// What [`fetch`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fetched {
    /// Files written now.
    pub written: usize,
    /// Files that were there already.
    pub present: usize,
    /// Bytes downloaded (archives).
    pub downloaded: u64,
}

/// The files of `files` missing under `dir`.
pub fn missing<'a>(files: &'a [PackFile], dir: &Path) -> Vec<&'a PackFile> {
    files
        .iter()
        .filter(|f| !dir.join(f.pack).join(f.file).is_file())
        .collect()
}

/// Fetch the files of `files` that `dir` lacks from the index at `index`, one
/// archive per package, verified against the index's SHA-256. Files are written
/// whole (a partial download leaves nothing behind). Blocking; `say` hears one line
/// per archive.
pub fn fetch(
    files: &[PackFile],
    dir: &Path,
    index: &str,
    say: &mut dyn FnMut(&str),
) -> Result<Fetched, PackError> {
    let mut by_package: BTreeMap<(&str, &str), Vec<&PackFile>> = BTreeMap::new();
    let mut out = Fetched::default();
    for file in files {
        if dir.join(file.pack).join(file.file).is_file() {
            out.present += 1;
        } else {
            by_package
                .entry((file.package, file.version))
                .or_default()
                .push(file);
        }
    }
    for ((package, version), wanted) in by_package {
        let release = locate(index, package, version, dir)?;
        say(&format!(
            "fetching {package} {version} ({:.1} MiB) for the language packs",
            release.size as f64 / f64::from(1 << 20)
        ));
        let archive = download(&release, index, dir)?;
        out.downloaded += release.size;
        let written = extract(&archive, &release.filename, &wanted, dir);
        let _ = std::fs::remove_file(&archive);
        out.written += written?;
    }
    Ok(out)
}

/// One downloadable file of a release.
#[derive(Debug)]
struct Release {
    filename: String,
    url: String,
    size: u64,
    sha256: String,
}

/// A project page of the Simple Repository API in its JSON form (PEP 691).
#[derive(Debug, serde::Deserialize)]
struct Project {
    files: Vec<ProjectFile>,
}

#[derive(Debug, serde::Deserialize)]
struct ProjectFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: std::collections::HashMap<String, String>,
    #[serde(default)]
    size: Option<u64>,
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(20))
        .try_proxy_from_env(true)
        .build()
}

fn unreachable(index: &str, dir: &Path, reason: impl std::fmt::Display) -> PackError {
    PackError::Unreachable {
        index: index.to_string(),
        reason: reason.to_string(),
        folder: dir.to_path_buf(),
    }
}

/// A distribution name as indexes compare it (PEP 503).
fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// The name and version a wheel or source archive's file name carries.
fn name_and_version(filename: &str) -> Option<(String, &str)> {
    if let Some(stem) = filename.strip_suffix(".whl") {
        let mut parts = stem.split('-');
        return Some((normalize(parts.next()?), parts.next()?));
    }
    let stem = filename
        .strip_suffix(".tar.gz")
        .or_else(|| filename.strip_suffix(".zip"))?;
    let (name, version) = stem.rsplit_once('-')?;
    Some((normalize(name), version))
}

/// The files of a project page: JSON (PEP 691) or the HTML links of PEP 503,
/// whose `#sha256=` fragments carry the hashes.
fn project_files(body: &str) -> Result<Vec<ProjectFile>, String> {
    if body.trim_start().starts_with('{') {
        return serde_json::from_str::<Project>(body)
            .map(|p| p.files)
            .map_err(|e| e.to_string());
    }
    let mut files = Vec::new();
    for link in body.split("<a ").skip(1) {
        let Some(href) = link
            .split_once("href=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(href, _)| href.replace("&amp;", "&"))
        else {
            continue;
        };
        let (url, fragment) = href.split_once('#').unwrap_or((href.as_str(), ""));
        let filename = url.rsplit('/').next().unwrap_or_default().to_string();
        let mut hashes = std::collections::HashMap::new();
        if let Some(sha) = fragment.strip_prefix("sha256=") {
            hashes.insert("sha256".to_string(), sha.to_string());
        }
        files.push(ProjectFile {
            filename,
            url: url.to_string(),
            hashes,
            size: None,
        });
    }
    Ok(files)
}

/// The release file to take from the index's simple API: a pure-Python wheel,
/// else the source archive.
fn locate(index: &str, package: &str, version: &str, dir: &Path) -> Result<Release, PackError> {
    let page = format!("{}/{}/", index.trim_end_matches('/'), normalize(package));
    let not_published = |reason: String| PackError::NotPublished {
        package: package.to_string(),
        version: version.to_string(),
        reason,
    };
    let body = match agent()
        .get(&page)
        .set(
            "Accept",
            "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
        )
        .call()
    {
        Ok(resp) => resp
            .into_string()
            .map_err(|e| not_published(format!("unreadable answer: {e}")))?,
        Err(ureq::Error::Status(code, _)) => {
            return Err(not_published(format!("HTTP {code} for {page}")))
        }
        Err(e) => return Err(unreachable(index, dir, e)),
    };
    let files = project_files(&body).map_err(|e| not_published(format!("unreadable page: {e}")))?;
    let rank = |f: &ProjectFile| {
        let (name, v) = name_and_version(&f.filename)?;
        if name != normalize(package) || v != version {
            return None;
        }
        if f.filename.ends_with("-none-any.whl") {
            Some(0)
        } else if f.filename.ends_with(".tar.gz") || f.filename.ends_with(".zip") {
            Some(1)
        } else {
            None
        }
    };
    let file = files
        .into_iter()
        .filter(|f| rank(f).is_some())
        .min_by_key(|f| rank(f))
        .ok_or_else(|| not_published("no wheel or source archive of that version".into()))?;
    let sha256 = file
        .hashes
        .get("sha256")
        .cloned()
        .ok_or_else(|| not_published(format!("{} has no SHA-256", file.filename)))?;
    let url = if file.url.starts_with("http") {
        file.url
    } else {
        format!("{page}{}", file.url)
    };
    Ok(Release {
        filename: file.filename,
        url,
        size: file.size.unwrap_or(0),
        sha256,
    })
}

/// Download `release` next to the packs, checking its SHA-256 on the way.
fn download(release: &Release, index: &str, dir: &Path) -> Result<PathBuf, PackError> {
    let disk = |e: std::io::Error| PackError::Disk {
        folder: dir.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(disk)?;
    let path = dir.join(format!(".{}.{}.part", release.filename, unique()));
    let resp = agent()
        .get(&release.url)
        .call()
        .map_err(|e| unreachable(index, dir, e))?;
    let mut body = resp.into_reader();
    let mut file = std::fs::File::create(&path).map_err(disk)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(unreachable(index, dir, e));
            }
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(disk)?;
    }
    file.flush().map_err(disk)?;
    let got = crate::store::hex(&hasher.finalize());
    if !got.eq_ignore_ascii_case(&release.sha256) {
        let _ = std::fs::remove_file(&path);
        return Err(PackError::Checksum {
            archive: release.filename.clone(),
            got,
            want: release.sha256.clone(),
        });
    }
    Ok(path)
}

/// A suffix no other download in flight uses (processes and threads alike).
fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// Whether the archive member `name` is `member` (a path suffix at a `/`).
fn is_member(name: &str, member: &str) -> bool {
    name == member
        || name
            .strip_suffix(member)
            .is_some_and(|head| head.ends_with('/'))
}

/// Copy the wanted members of the archive at `path` into their packs.
fn extract(
    path: &Path,
    archive: &str,
    wanted: &[&PackFile],
    dir: &Path,
) -> Result<usize, PackError> {
    let bad = |reason: String| PackError::Archive {
        archive: archive.to_string(),
        reason,
    };
    let mut written = 0usize;
    let mut take = |name: &str, reader: &mut dyn Read| -> Result<(), PackError> {
        for file in wanted.iter().filter(|f| is_member(name, f.member)) {
            write_whole(dir, file, reader)?;
            written += 1;
        }
        Ok(())
    };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    if archive.ends_with(".tar.gz") {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
        for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            let name = entry
                .path()
                .map_err(|e| bad(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            take(&name, &mut entry)?;
        }
    } else {
        let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
            let name = entry.name().map_err(|e| bad(e.to_string()))?.into_owned();
            take(&name, &mut entry)?;
        }
    }
    if let Some(lost) = wanted
        .iter()
        .find(|f| !dir.join(f.pack).join(f.file).is_file())
    {
        return Err(PackError::MissingMember {
            archive: archive.to_string(),
            member: lost.member.to_string(),
        });
    }
    Ok(written)
}

/// Write one pack file through a temporary name, so a reader never sees half of it.
fn write_whole(dir: &Path, file: &PackFile, reader: &mut dyn Read) -> Result<(), PackError> {
    let folder = dir.join(file.pack);
    let disk = |e: std::io::Error| PackError::Disk {
        folder: folder.clone(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(&folder).map_err(disk)?;
    let part = folder.join(format!(".{}.{}.part", file.file, unique()));
    let mut out = std::fs::File::create(&part).map_err(disk)?;
    std::io::copy(reader, &mut out).map_err(disk)?;
    out.flush().map_err(disk)?;
    std::fs::rename(&part, folder.join(file.file)).map_err(disk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_pages_in_json_and_html() {
        let json = r#"{"files": [{"filename": "unidic-lite-1.0.8.tar.gz", "url": "https://files.example/u.tar.gz", "hashes": {"sha256": "ab"}, "size": 5}]}"#;
        let files = project_files(json).unwrap();
        assert_eq!(files[0].filename, "unidic-lite-1.0.8.tar.gz");
        assert_eq!(files[0].size, Some(5));
        let html = r#"<a href="https://files.example/p/misaki-0.9.4-py3-none-any.whl#sha256=cd" data-requires-python="&gt;=3.8">misaki-0.9.4-py3-none-any.whl</a><br/>"#;
        let files = project_files(html).unwrap();
        assert_eq!(files[0].filename, "misaki-0.9.4-py3-none-any.whl");
        assert_eq!(files[0].hashes["sha256"], "cd");
        assert_eq!(
            name_and_version("pypinyin-0.55.0-py2.py3-none-any.whl"),
            Some(("pypinyin".into(), "0.55.0"))
        );
        assert_eq!(
            name_and_version("unidic_lite-1.0.8.tar.gz"),
            Some(("unidic-lite".into(), "1.0.8"))
        );
    }

    #[test]
    fn members_match_at_path_boundaries() {
        assert!(is_member(
            "unidic-lite-1.0.8/unidic_lite/dicdir/sys.dic",
            "unidic_lite/dicdir/sys.dic"
        ));
        assert!(is_member(
            "misaki/data/ja_words.txt",
            "misaki/data/ja_words.txt"
        ));
        assert!(!is_member(
            "x/notunidic_lite/dicdir/sys.dic",
            "unidic_lite/dicdir/sys.dic"
        ));
    }

    #[test]
    fn archives_give_their_members_to_the_packs() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("demo-1.0-py3-none-any.whl");
        {
            let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            zip.start_file("demo/data/words.txt", opts).unwrap();
            zip.write_all("言葉\n".as_bytes()).unwrap();
            zip.finish().unwrap();
        }
        let tgz = dir.path().join("demo-1.0.tar.gz");
        {
            let gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&tgz).unwrap(),
                flate2::Compression::fast(),
            );
            let mut tar = tar::Builder::new(gz);
            let data = b"dictionary";
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_cksum();
            tar.append_data(&mut header, "demo-1.0/demo/dicdir/sys.dic", &data[..])
                .unwrap();
            tar.into_inner().unwrap().finish().unwrap();
        }
        let packs = dir.path().join("packs");
        let words = PackFile {
            pack: "ja",
            package: "demo",
            version: "1.0",
            member: "demo/data/words.txt",
            file: "words.txt",
        };
        let sys = PackFile {
            member: "demo/dicdir/sys.dic",
            file: "sys.dic",
            ..words
        };
        assert_eq!(
            extract(&wheel, "demo-1.0-py3-none-any.whl", &[&words], &packs).unwrap(),
            1
        );
        assert_eq!(
            extract(&tgz, "demo-1.0.tar.gz", &[&sys], &packs).unwrap(),
            1
        );
        assert_eq!(
            std::fs::read_to_string(packs.join("ja/words.txt")).unwrap(),
            "言葉\n"
        );
        assert_eq!(
            std::fs::read(packs.join("ja/sys.dic")).unwrap(),
            b"dictionary"
        );
        assert!(missing(&[words, sys], &packs).is_empty());
        let absent = PackFile {
            member: "demo/none.txt",
            file: "none.txt",
            ..words
        };
        assert!(matches!(
            extract(&wheel, "demo-1.0-py3-none-any.whl", &[&absent], &packs),
            Err(PackError::MissingMember { .. })
        ));
        assert_eq!(missing(&[absent], &packs).len(), 1);
    }
}
