//! The deciding code stays in short functions: no function in `src/controller` or `src/domain`
//! is over 100 lines (tests aside), so that each decision can be read, named and tested alone.
//! The lines are counted from `fn` to the closing brace, as the source is parsed.

use std::path::{Path, PathBuf};

use syn::visit::Visit;

const LIMIT: usize = 100;
const DIRS: [&str; 2] = ["src/controller", "src/domain"];

struct Lengths {
    file: PathBuf,
    found: Vec<(usize, String)>,
}

impl Lengths {
    fn record(&mut self, name: &syn::Ident, block: &syn::Block) {
        let start = name.span().start().line;
        let end = block.brace_token.span.close().end().line;
        let place = format!("{}:{start} {name}", self.file.display());
        self.found.push((end + 1 - start, place));
    }
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("test")
            || (a.path().is_ident("cfg")
                && a.parse_args::<syn::Ident>().is_ok_and(|arg| arg == "test"))
    })
}

impl<'ast> Visit<'ast> for Lengths {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test(&f.attrs) {
            self.record(&f.sig.ident, &f.block);
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test(&f.attrs) {
            self.record(&f.sig.ident, &f.block);
            syn::visit::visit_impl_item_fn(self, f);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() && name != "tests" {
            rust_files(&path, into);
        } else if name.ends_with(".rs") && name != "tests.rs" {
            into.push(path);
        }
    }
}

/// Every function of the deciding code with its length, longest first.
fn lengths() -> Vec<(usize, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    let mut all = Lengths {
        file: PathBuf::new(),
        found: Vec::new(),
    };
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        all.file = file.strip_prefix(root).unwrap_or(&file).to_owned();
        all.visit_file(&parsed);
    }
    all.found.sort_by(|a, b| b.cmp(a));
    all.found
}

#[test]
fn no_function_that_decides_is_over_100_lines() {
    let lengths = lengths();
    // The counting itself: the tree holds hundreds of functions, and the longest is long.
    assert!(
        lengths.len() > 300,
        "only {} functions found",
        lengths.len()
    );
    assert!(lengths[0].0 > 40);
    let long: Vec<String> = lengths
        .iter()
        .filter(|(lines, _)| *lines > LIMIT)
        .map(|(lines, place)| format!("{place}: {lines} lines"))
        .collect();
    assert!(
        long.is_empty(),
        "split these into named steps:\n{}",
        long.join("\n")
    );
    eprintln!("the ten longest:");
    for (lines, place) in lengths.iter().take(10) {
        eprintln!("  {lines:4} {place}");
    }
}
