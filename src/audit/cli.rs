//! `phigate audit …` and `phigate keygen audit`: the tools compliance and
//! security staff run against a spool.

use super::checkpoint::{NoteSigner, NoteVerifier};
use super::report::{self, Filter, Window};
use super::segment::{Item, Reader};
use super::verify::{verify, Verify};
use super::AuditEvent;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A key given as its text or as a file holding it.
fn key_text(arg: &str) -> Result<String, String> {
    let p = Path::new(arg);
    if p.is_file() {
        std::fs::read_to_string(p).map_err(|e| format!("{arg}: {e}"))
    } else {
        Ok(arg.to_string())
    }
}

/// `phigate keygen audit`: a new signing key written to `out` (mode 0600),
/// or an existing key's public half; prints the verifier key.
pub fn keygen(name: &str, out: Option<&Path>, existing: Option<&Path>) -> Result<String, String> {
    let signer = match existing {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            NoteSigner::parse(&text).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => {
            let signer = NoteSigner::generate(name).map_err(|e| e.to_string())?;
            let Some(out) = out else {
                return Err("--out FILE is needed to keep the new private key".into());
            };
            write_private(out, &signer.private_text())?;
            signer
        }
    };
    Ok(signer.verifier().text())
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            format!(
                "{}: {e} (an existing key is never overwritten)",
                path.display()
            )
        })?;
    f.write_all(format!("{text}\n").as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `phigate audit verify`: 0 when everything holds.
pub fn verify_cmd(
    dir: &Path,
    pubkey: Option<&str>,
    checkpoint: Option<&Path>,
    origin: Option<&str>,
    max_unsigned: u64,
) -> Result<bool, String> {
    let key = match pubkey {
        Some(k) => Some(NoteVerifier::parse(&key_text(k)?).map_err(|e| format!("--pubkey: {e}"))?),
        None => None,
    };
    let held = match checkpoint {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => None,
    };
    if !dir.join("segments").is_dir() {
        return Err(format!(
            "{} holds no audit spool (no segments/)",
            dir.display()
        ));
    }
    let report = verify(
        dir,
        &Verify {
            key: key.as_ref(),
            checkpoint: held.as_deref(),
            origin,
            max_unsigned,
        },
    )
    .map_err(|e| format!("{}: {e}", dir.display()))?;
    for f in &report.findings {
        println!("FAIL {}", f.describe());
    }
    let range = match (report.first_seq, report.last_seq) {
        (Some(a), Some(b)) => format!("records {a}..={b}"),
        _ => "no records".into(),
    };
    println!(
        "{}: {} ({} events, {} signed checkpoints verified){}",
        if report.ok() { "ok" } else { "FAILED" },
        range,
        report.events,
        report.checkpoints,
        report
            .held_checkpoint
            .map(|s| format!("; the given checkpoint (size {s}) is covered"))
            .unwrap_or_default()
    );
    if key.is_some() && report.checkpoints == 0 && report.records > 0 {
        println!("note: no signed checkpoint in the spool yet (one is written every N records or T seconds and at shutdown)");
    }
    if report.tail_incomplete {
        println!("note: the last record is incomplete: a write in progress, or a torn write the next start truncates");
    }
    if key.is_none() {
        println!("note: no --pubkey: checkpoint signatures were not checked");
    }
    if held.is_none() {
        println!(
            "note: no --checkpoint held elsewhere: a cut or rewritten tail cannot be detected"
        );
    }
    if report.first_seq.is_some_and(|s| s > 0) {
        println!(
            "note: the spool starts at record {} (earlier segments removed by retention)",
            report.first_seq.unwrap_or(0)
        );
    }
    Ok(report.ok())
}

/// A date or instant: RFC 3339, or `YYYY-MM-DD` (midnight UTC).
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    let d: jiff::civil::Date = s
        .parse()
        .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD) or an RFC 3339 instant"))?;
    format!("{d}T00:00:00Z")
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| e.to_string())
}

/// `phigate audit disclosures`.
pub fn disclosures_cmd(
    dir: &Path,
    patient: &str,
    window: &Window,
    format: &str,
) -> Result<(), String> {
    let (list, damage) =
        report::disclosures(dir, patient, window).map_err(|e| format!("{}: {e}", dir.display()))?;
    for d in &damage {
        eprintln!("warning: {d}");
    }
    let mut out = std::io::stdout().lock();
    let w =
        |out: &mut std::io::StdoutLock, s: String| writeln!(out, "{s}").map_err(|e| e.to_string());
    match format {
        "json" => w(
            &mut out,
            serde_json::to_string_pretty(&list).unwrap_or_default(),
        )?,
        "csv" => {
            w(
                &mut out,
                "date,recipient,organization,description,purpose,outcome,request_id".into(),
            )?;
            for d in &list {
                let row = [
                    &d.date,
                    &d.recipient,
                    &d.organization,
                    &d.description,
                    &d.purpose,
                    &d.outcome,
                    &d.request_id,
                ]
                .iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(",");
                w(&mut out, row)?;
            }
        }
        "table" => {
            w(
                &mut out,
                format!("Accounting of disclosures for patient {patient} (45 CFR 164.528)"),
            )?;
            if !window.include_all {
                w(&mut out, "Treatment, payment and operations are left out by declared purpose of use (--all keeps them).".into())?;
            }
            w(
                &mut out,
                format!(
                    "{:<25} {:<28} {:<10} {:<22} {:<16} {}",
                    "date", "recipient", "purpose", "outcome", "organization", "description"
                ),
            )?;
            for d in &list {
                w(
                    &mut out,
                    format!(
                        "{:<25} {:<28} {:<10} {:<22} {:<16} {}",
                        d.date, d.recipient, d.purpose, d.outcome, d.organization, d.description
                    ),
                )?;
            }
            w(&mut out, format!("{} disclosure(s)", list.len()))?;
        }
        other => return Err(format!("unknown format {other:?}: use table, csv or json")),
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    // A leading =, +, - or @ would run as a formula in a spreadsheet.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// `phigate audit search`: matching events, one line each (or JSON).
pub fn search_cmd(dir: &Path, filter: &Filter, json: bool) -> Result<usize, String> {
    let mut n = 0;
    let mut out = std::io::stdout().lock();
    let mut err = None;
    report::events(
        dir,
        |seq, e| {
            if filter.matches(&e) && err.is_none() {
                n += 1;
                let line = if json {
                    String::from_utf8_lossy(&e.to_json()).into_owned()
                } else {
                    report::line(seq, &e)
                };
                if let Err(e) = writeln!(out, "{line}") {
                    err = Some(e.to_string());
                }
            }
        },
        |d| eprintln!("warning: {d}"),
    )
    .map_err(|e| format!("{}: {e}", dir.display()))?;
    match err {
        Some(e) => Err(e),
        None => Ok(n),
    }
}

/// `phigate audit tail`: the last `n` events, then (with `follow`) each
/// new one as it is written, one readable line per event.
pub fn tail_cmd(dir: &Path, n: usize, follow: bool) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    let mut reader = Reader::live(dir).map_err(err)?;
    let mut last: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    drain(&mut reader, |line| {
        last.push_back(line);
        if last.len() > n {
            last.pop_front();
        }
    })
    .map_err(err)?;
    let mut out = std::io::stdout();
    for l in last {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        reader.refresh(dir).map_err(err)?;
        drain(&mut reader, |line| {
            let _ = writeln!(out, "{line}");
        })
        .map_err(err)?;
        if out.flush().is_err() {
            return Ok(());
        }
    }
}

fn drain(reader: &mut Reader, mut f: impl FnMut(String)) -> std::io::Result<()> {
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Record(r) if r.kind == super::frame::Kind::Event => {
                match AuditEvent::from_json(&r.payload) {
                    Ok(e) => f(report::line(r.seq, &e)),
                    Err(_) => f(format!("#{} (not an audit event)", r.seq)),
                }
            }
            Item::Record(r) if r.kind == super::frame::Kind::Anchor => f(format!(
                "#{} retention anchor (earlier records deleted)",
                r.seq
            )),
            Item::Record(r) => f(format!("#{} checkpoint", r.seq)),
            Item::Damaged {
                after_seq, damage, ..
            } => f(format!(
                "DAMAGED record after #{after_seq:?} ({}): run `phigate audit verify`",
                damage.as_str()
            )),
            Item::BadSegment(p) => f(format!("{} is not a spool segment", p.display())),
            Item::MisplacedSegment { segment, .. } => f(format!(
                "{} does not start where its name says: run `phigate audit verify`",
                segment.display()
            )),
        }
    }
    Ok(())
}

/// The spool directory from `--dir`, or the `[audit] dir` of `--config`.
pub fn spool_dir(dir: Option<PathBuf>, config: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(d) = dir {
        return Ok(d);
    }
    let Some(path) = config else {
        return Err("name the spool with --dir DIR or --config phigate.toml".into());
    };
    let c = crate::config::Config::load(path).map_err(|e| e.to_string())?;
    c.audit
        .map(|a| a.dir)
        .ok_or_else(|| format!("{}: no [audit] section", path.display()))
}
