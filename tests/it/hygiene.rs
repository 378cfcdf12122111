//! Rules of the code base that a test enforces: no unbounded queue anywhere in `src/`.

use std::fs;
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_unbounded_queue_in_src() {
    // Constructors of queues that grow without limit.
    let forbidden = [
        "unbounded(",
        "unbounded::<",
        "mpsc::channel(",
        "mpsc::channel::<",
        "SegQueue",
    ];
    let mut files = Vec::new();
    rust_files(&crate::util::repo("src"), &mut files);
    assert!(files.len() > 10);
    let mut hits = Vec::new();
    for f in files {
        for (n, line) in fs::read_to_string(&f).unwrap().lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if forbidden.iter().any(|p| code.contains(p)) {
                hits.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "unbounded queues are not allowed:\n{}",
        hits.join("\n")
    );
}
