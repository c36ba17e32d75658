//! The import graph of the policy layer: no cycle between the modules of `src/policy/`, and no
//! import of the layers above it (`crate::pipeline`, `crate::filter`, `crate::wasm`,
//! `crate::cli`). `src/pipeline/`, when present, is held to the same (without `pipeline`).
//! `make modules` runs the check on the tree and prints the graph.
//!
//! Every file of the layer is parsed with `syn`, following `mod` declarations as rustc does
//! (`#[path]` included). Items under `#[cfg(test)]` are left out: the graph is the product's.
//! Every path that names a module of the crate is resolved to that module: `use` trees (groups,
//! `self`, globs, renames) and paths in code, when they start with `crate::`, `self::`,
//! `super::` or the name of a child module. Macro arguments are read as expressions where they
//! parse as such; in other macro input and in attribute arguments, every `crate::`, `self::`
//! or `super::` path is read from the tokens. A path through a re-export (`pub use`) is followed to the module that defines the
//! item. Edges join the layer's direct children: everything under `policy/body/` counts as
//! `body`. Paths to the layer's root module itself (`mod.rs`) and edges from it are left out:
//! it only declares and re-exports its children.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};

/// A module by its path from the crate root, such as `["policy", "compile"]`.
type ModulePath = Vec<String>;

/// A module of the layer and what it holds.
struct Module {
    path: ModulePath,
    /// The file, relative to the crate's directory.
    file: String,
    items: Vec<syn::Item>,
    children: BTreeSet<String>,
    /// Names made public by `pub use`, with the path they name, from the crate root.
    reexports: BTreeMap<String, Vec<String>>,
}

/// What the check found in one layer.
struct Graph {
    layer: String,
    /// The layer's direct children.
    nodes: BTreeSet<String>,
    /// Each edge with the first place (file:line) that makes it.
    edges: BTreeMap<(String, String), String>,
    /// Imports of a layer above, each as `file:line: path`.
    forbidden: Vec<String>,
    /// Edges left out of the cycle search by `ALLOWED_EDGES`, each with its reason.
    allowed: Vec<String>,
}

/// Edges that close a cycle on purpose, each with the reason; every other cycle fails.
const ALLOWED_EDGES: [(&str, &str, &str, &str); 1] = [(
    "pipeline",
    "host",
    "answer",
    "the host trait sends only an `Answer`, which only `answer.rs` makes, after it records the \
     refusal (or the local answer) through the host: no answer goes out unrecorded",
)];

/// Most cycles listed: a graph knotted enough to have more needs no longer list.
const MAX_CYCLES: usize = 500;

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && matches!(&attr.meta, syn::Meta::List(list) if list.tokens.to_string() == "test")
    })
}

fn attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(item) => &item.attrs,
        syn::Item::Enum(item) => &item.attrs,
        syn::Item::ExternCrate(item) => &item.attrs,
        syn::Item::Fn(item) => &item.attrs,
        syn::Item::ForeignMod(item) => &item.attrs,
        syn::Item::Impl(item) => &item.attrs,
        syn::Item::Macro(item) => &item.attrs,
        syn::Item::Mod(item) => &item.attrs,
        syn::Item::Static(item) => &item.attrs,
        syn::Item::Struct(item) => &item.attrs,
        syn::Item::Trait(item) => &item.attrs,
        syn::Item::TraitAlias(item) => &item.attrs,
        syn::Item::Type(item) => &item.attrs,
        syn::Item::Union(item) => &item.attrs,
        syn::Item::Use(item) => &item.attrs,
        _ => &[],
    }
}

/// The value of a `#[path = "..."]` attribute.
fn path_attribute(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|attr| match &attr.meta {
        syn::Meta::NameValue(pair) if pair.path.is_ident("path") => match &pair.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(text),
                ..
            }) => Some(text.value()),
            _ => None,
        },
        _ => None,
    })
}

/// Every module of `layer` (`src/LAYER/mod.rs` or `src/LAYER.rs` and what they declare);
/// none when the layer does not exist.
fn load(root: &Path, layer: &str) -> Result<Vec<Module>, String> {
    let src = root.join("src");
    let mut modules = Vec::new();
    for file in [
        src.join(layer).join("mod.rs"),
        src.join(format!("{layer}.rs")),
    ] {
        if file.is_file() {
            let path = vec![layer.to_owned()];
            load_file(root, &file, path, &src.join(layer), &mut modules)?;
            break;
        }
    }
    Ok(modules)
}

fn load_file(
    root: &Path,
    file: &Path,
    path: ModulePath,
    child_dir: &Path,
    modules: &mut Vec<Module>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let parsed = syn::parse_file(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    add_module(root, file, path, child_dir, parsed.items, modules)
}

fn add_module(
    root: &Path,
    file: &Path,
    path: ModulePath,
    child_dir: &Path,
    items: Vec<syn::Item>,
    modules: &mut Vec<Module>,
) -> Result<(), String> {
    let mut children = BTreeSet::new();
    for item in &items {
        let syn::Item::Mod(declared) = item else {
            continue;
        };
        if is_test_only(&declared.attrs) {
            continue;
        }
        let name = declared.ident.to_string();
        children.insert(name.clone());
        let mut child_path = path.clone();
        child_path.push(name.clone());
        let grand_dir = child_dir.join(&name);
        if let Some((_, content)) = &declared.content {
            add_module(root, file, child_path, &grand_dir, content.clone(), modules)?;
            continue;
        }
        if let Some(relative) = path_attribute(&declared.attrs) {
            let dir = file.parent().unwrap_or(root);
            let child_file = dir.join(relative);
            let dir = child_file.parent().unwrap_or(root).to_path_buf();
            load_file(root, &child_file, child_path, &dir, modules)?;
            continue;
        }
        let flat = child_dir.join(format!("{name}.rs"));
        let nested = grand_dir.join("mod.rs");
        let child_file = if flat.is_file() { flat } else { nested };
        load_file(root, &child_file, child_path, &grand_dir, modules)?;
    }
    let mut reexports = BTreeMap::new();
    for item in &items {
        let syn::Item::Use(used) = item else {
            continue;
        };
        if matches!(used.vis, syn::Visibility::Inherited) || is_test_only(&used.attrs) {
            continue;
        }
        for leaf in use_leaves(&used.tree) {
            let Some(name) = leaf.exported else {
                continue;
            };
            if let Some(target) = absolute(&path, &children, &leaf.segments) {
                reexports.insert(name, target);
            }
        }
    }
    modules.push(Module {
        path,
        file: display(root, file),
        items,
        children,
        reexports,
    });
    Ok(())
}

fn display(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .map(PathBuf::from)
        .unwrap_or_else(|_| file.to_path_buf())
        .display()
        .to_string()
}

/// One path a `use` tree names.
struct UseLeaf {
    segments: Vec<String>,
    /// The name it is known by in the module; `None` for a glob.
    exported: Option<String>,
    line: usize,
}

fn use_leaves(tree: &syn::UseTree) -> Vec<UseLeaf> {
    let mut leaves = Vec::new();
    expand(tree, &mut Vec::new(), &mut leaves);
    leaves
}

fn expand(tree: &syn::UseTree, prefix: &mut Vec<String>, leaves: &mut Vec<UseLeaf>) {
    let leaf = |prefix: &[String], ident: &syn::Ident, exported: Option<String>| {
        let mut segments = prefix.to_vec();
        // `use a::{self}` names `a` itself.
        if ident != "self" || prefix.is_empty() {
            segments.push(ident.to_string());
        }
        UseLeaf {
            segments,
            exported,
            line: ident.span().start().line,
        }
    };
    match tree {
        syn::UseTree::Path(path) => {
            prefix.push(path.ident.to_string());
            expand(&path.tree, prefix, leaves);
            prefix.pop();
        }
        syn::UseTree::Name(name) => {
            let exported = match prefix.last() {
                Some(last) if name.ident == "self" => last.clone(),
                _ => name.ident.to_string(),
            };
            leaves.push(leaf(prefix, &name.ident, Some(exported)));
        }
        syn::UseTree::Rename(rename) => {
            leaves.push(leaf(prefix, &rename.ident, Some(rename.rename.to_string())));
        }
        syn::UseTree::Glob(glob) => leaves.push(UseLeaf {
            segments: prefix.clone(),
            exported: None,
            line: glob.star_token.span.start().line,
        }),
        syn::UseTree::Group(group) => {
            for tree in &group.items {
                expand(tree, prefix, leaves);
            }
        }
    }
}

/// A path as written in `module`, from the crate root; `None` when it does not start at a
/// module of the crate (a local name, an import, another crate).
fn absolute(
    module: &[String],
    children: &BTreeSet<String>,
    segments: &[String],
) -> Option<Vec<String>> {
    let (first, rest) = segments.split_first()?;
    match first.as_str() {
        "crate" => Some(rest.to_vec()),
        "self" => Some([module, rest].concat()),
        "super" => {
            let supers = segments.iter().take_while(|s| *s == "super").count();
            let kept = module.get(..module.len().checked_sub(supers)?)?;
            Some([kept, segments.get(supers..)?].concat())
        }
        name if children.contains(name) => Some([module, segments].concat()),
        _ => None,
    }
}

/// The module an absolute path names: its longest prefix that is a module, re-exports
/// followed. The first segment is always taken as a module of the crate root.
fn resolve(modules: &BTreeMap<ModulePath, &Module>, path: &[String], hops: usize) -> ModulePath {
    let mut current: ModulePath = Vec::new();
    for (index, segment) in path.iter().enumerate() {
        let mut next = current.clone();
        next.push(segment.clone());
        if current.is_empty() || modules.contains_key(&next) {
            current = next;
            continue;
        }
        let target = modules
            .get(&current)
            .and_then(|module| module.reexports.get(segment));
        let rest = path.get(index.saturating_add(1)..).unwrap_or_default();
        if let Some(target) = target.filter(|_| hops < 16) {
            let redirected = [target.as_slice(), rest].concat();
            return resolve(modules, &redirected, hops.saturating_add(1));
        }
        break;
    }
    current
}

/// The paths a module's own items write, each with its line; nested modules are their own.
#[derive(Default)]
struct Paths {
    found: Vec<(Vec<String>, usize)>,
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if is_test_only(attrs(item)) || matches!(item, syn::Item::Mod(_)) {
            return;
        }
        visit::visit_item(self, item);
    }

    fn visit_item_use(&mut self, used: &'ast syn::ItemUse) {
        for leaf in use_leaves(&used.tree) {
            self.found.push((leaf.segments, leaf.line));
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let line = path
            .segments
            .first()
            .map_or(0, |segment| segment.ident.span().start().line);
        self.found.push((segments, line));
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        visit::visit_macro(self, mac);
        let parser = Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated;
        match syn::parse::Parser::parse2(parser, mac.tokens.clone()) {
            Ok(arguments) => {
                for argument in &arguments {
                    self.visit_expr(argument);
                }
            }
            Err(_) => self.scan_tokens(mac.tokens.clone()),
        }
    }

    fn visit_attribute(&mut self, attr: &'ast syn::Attribute) {
        visit::visit_attribute(self, attr);
        // Paths inside attribute arguments: `#[cfg_attr(..., schemars(max = super::x::Y))]`.
        if let syn::Meta::List(list) = &attr.meta {
            self.scan_tokens(list.tokens.clone());
        }
    }
}

impl Paths {
    /// Paths in tokens that are not parsed as code: each `crate::`, `self::` or `super::` run.
    fn scan_tokens(&mut self, tokens: proc_macro2::TokenStream) {
        use proc_macro2::{Spacing, TokenTree};
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        // The `::` at `at`, then the name after it.
        let next_segment = |at: usize| match tokens.get(at..at.saturating_add(3)) {
            Some([TokenTree::Punct(first), TokenTree::Punct(second), TokenTree::Ident(name)])
                if first.as_char() == ':'
                    && first.spacing() == Spacing::Joint
                    && second.as_char() == ':' =>
            {
                Some(name.to_string())
            }
            _ => None,
        };
        let mut at = 0usize;
        while let Some(token) = tokens.get(at) {
            at = at.saturating_add(1);
            match token {
                TokenTree::Group(group) => self.scan_tokens(group.stream()),
                TokenTree::Ident(ident)
                    if ident == "crate" || ident == "self" || ident == "super" =>
                {
                    let mut segments = vec![ident.to_string()];
                    while let Some(name) = next_segment(at) {
                        segments.push(name);
                        at = at.saturating_add(3);
                    }
                    if segments.len() > 1 {
                        self.found.push((segments, ident.span().start().line));
                    }
                }
                _ => {}
            }
        }
    }
}

/// Builds the graph of `layer`'s direct children; `forbidden` names the crate's top-level
/// modules the layer must not import.
fn check(root: &Path, layer: &str, forbidden: &[&str]) -> Result<Graph, String> {
    let loaded = load(root, layer)?;
    let modules: BTreeMap<ModulePath, &Module> = loaded
        .iter()
        .map(|module| (module.path.clone(), module))
        .collect();
    let mut graph = Graph {
        layer: layer.to_owned(),
        nodes: BTreeSet::new(),
        edges: BTreeMap::new(),
        forbidden: Vec::new(),
        allowed: Vec::new(),
    };
    for module in &loaded {
        let Some(from) = module.path.get(1) else {
            continue;
        };
        graph.nodes.insert(from.clone());
        let mut paths = Paths::default();
        for item in &module.items {
            paths.visit_item(item);
        }
        for (segments, line) in paths.found {
            let Some(path) = absolute(&module.path, &module.children, &segments) else {
                continue;
            };
            let target = resolve(&modules, &path, 0);
            let place = format!("{}:{line}", module.file);
            match target.first().map(String::as_str) {
                Some(top) if top == layer => {
                    if let Some(to) = target.get(1).filter(|to| *to != from) {
                        let allowed = ALLOWED_EDGES.iter().find(|(in_layer, source, target, _)| {
                            *in_layer == layer && source == from && target == to
                        });
                        match allowed {
                            Some((_, _, _, reason)) => {
                                let text = format!("{from} -> {to} ({place}): {reason}");
                                if !graph.allowed.contains(&text) {
                                    graph.allowed.push(text);
                                }
                            }
                            None => {
                                graph
                                    .edges
                                    .entry((from.clone(), to.clone()))
                                    .or_insert(place);
                            }
                        }
                    }
                }
                Some(top) if forbidden.contains(&top) => graph.forbidden.push(format!(
                    "{place}: {} imports crate::{}",
                    layer,
                    path.join("::")
                )),
                _ => {}
            }
        }
    }
    Ok(graph)
}

impl Graph {
    fn targets<'a>(&'a self, from: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.edges
            .keys()
            .filter(move |(source, _)| source == from)
            .map(|(_, target)| target.as_str())
    }

    /// Every elementary cycle, each from its least node and listed once, up to `MAX_CYCLES`.
    fn cycles(&self) -> Vec<Vec<String>> {
        let mut cycles = Vec::new();
        for start in &self.nodes {
            let mut path = vec![start.as_str()];
            self.walk(start, &mut path, &mut cycles);
        }
        cycles
    }

    fn walk<'a>(&'a self, start: &str, path: &mut Vec<&'a str>, cycles: &mut Vec<Vec<String>>) {
        let Some(&last) = path.last() else {
            return;
        };
        for next in self.targets(last) {
            if cycles.len() >= MAX_CYCLES {
                return;
            }
            if next == start {
                cycles.push(path.iter().map(|node| (*node).to_owned()).collect());
            } else if next > start && !path.contains(&next) {
                path.push(next);
                self.walk(start, path, cycles);
                path.pop();
            }
        }
    }

    /// The graph, one line per module and what it imports.
    fn render(&self) -> String {
        let mut text = format!("{} modules and what each imports:\n", self.layer);
        for node in &self.nodes {
            let targets: Vec<&str> = self.targets(node).collect();
            let _ = writeln!(text, "  {node} -> {}", targets.join(", "));
        }
        for allowed in &self.allowed {
            let _ = writeln!(text, "  allowed: {allowed}");
        }
        text
    }

    /// Each cycle as `a -> b -> a`, with the place of each edge; then each forbidden import.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let cycles = self.cycles();
        for cycle in &cycles {
            let mut text = format!("cycle in {}: {} -> ", self.layer, cycle.join(" -> "));
            text.push_str(cycle.first().map_or("", String::as_str));
            let closing = cycle.iter().skip(1).chain(cycle.first());
            for (from, to) in cycle.iter().zip(closing) {
                let place = self
                    .edges
                    .get(&(from.clone(), to.clone()))
                    .map_or("", String::as_str);
                let _ = write!(text, "\n    {from} -> {to}: {place}");
            }
            problems.push(text);
        }
        if cycles.len() >= MAX_CYCLES {
            problems.push(format!("(listing stopped at {MAX_CYCLES} cycles)"));
        }
        problems.extend(self.forbidden.iter().cloned());
        problems
    }
}

/// The layers checked, each with the top-level modules it must not import.
const LAYERS: [(&str, &[&str]); 2] = [
    ("policy", &["pipeline", "filter", "wasm", "cli"]),
    ("pipeline", &["filter", "wasm", "cli"]),
];

#[test]
fn the_policy_layer_has_no_import_cycle_and_imports_no_layer_above() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    for (layer, forbidden) in LAYERS {
        let graph = check(root, layer, forbidden).unwrap();
        if graph.nodes.is_empty() {
            continue;
        }
        println!("{}", graph.render());
        problems.extend(graph.problems());
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// A crate directory holding `files` (path, text) under a temporary directory.
#[allow(clippy::unwrap_used)] // a test helper: a failure here fails the test
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let file = dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    dir
}

#[allow(clippy::unwrap_used)] // a test helper: a failure here fails the test
fn problems_of(files: &[(&str, &str)]) -> Vec<String> {
    let dir = tree(files);
    let (layer, forbidden) = LAYERS[0];
    check(dir.path(), layer, forbidden).unwrap().problems()
}

#[test]
fn a_cycle_through_a_grouped_use_is_found_with_its_places() {
    let problems = problems_of(&[
        ("src/policy/mod.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        (
            "src/policy/a.rs",
            "use crate::policy::{\n    b::{self, Thing},\n    c as see,\n};\n",
        ),
        ("src/policy/b.rs", "pub struct Thing;\nuse super::a::*;\n"),
        ("src/policy/c.rs", "pub fn f() {}\n"),
    ]);
    assert_eq!(
        problems,
        ["cycle in policy: a -> b -> a\n    a -> b: src/policy/a.rs:2\n    b -> a: src/policy/b.rs:2"]
    );
}

#[test]
fn a_cycle_through_an_inline_path_in_code_is_found() {
    let problems = problems_of(&[
        ("src/policy/mod.rs", "pub mod a;\npub mod b;\n"),
        (
            "src/policy/a.rs",
            "pub struct Thing;\npub fn f() -> u8 {\n    crate::policy::b::g()\n}\n",
        ),
        (
            "src/policy/b.rs",
            "pub fn g() -> u8 { 0 }\nuse super::a::Thing;\n",
        ),
    ]);
    assert_eq!(
        problems,
        ["cycle in policy: a -> b -> a\n    a -> b: src/policy/a.rs:3\n    b -> a: src/policy/b.rs:2"]
    );
}

#[test]
fn a_cycle_through_super_super_from_a_sub_module_counts_for_its_directory() {
    let problems = problems_of(&[
        ("src/policy/mod.rs", "pub mod body;\npub mod limits;\n"),
        ("src/policy/body/mod.rs", "pub mod read;\n"),
        (
            "src/policy/body/read.rs",
            "pub struct Reader;\nuse super::super::limits::Cap;\n",
        ),
        (
            "src/policy/limits.rs",
            "pub struct Cap;\nfn f(_: crate::policy::body::read::Reader) {}\n",
        ),
    ]);
    assert_eq!(
        problems,
        ["cycle in policy: body -> limits -> body\n    body -> limits: src/policy/body/read.rs:2\n    limits -> body: src/policy/limits.rs:2"]
    );
}

#[test]
fn a_cycle_through_paths_in_attribute_and_macro_tokens_is_found() {
    let problems = problems_of(&[
        ("src/policy/mod.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        (
            "src/policy/a.rs",
            "#[cfg_attr(feature = \"x\", doc(max = super::b::LIMIT))]\npub struct Thing;\n",
        ),
        (
            "src/policy/b.rs",
            "pub const LIMIT: u8 = 1;\nm! { super::c::f; }\n",
        ),
        (
            "src/policy/c.rs",
            "pub fn f() { vec![crate::policy::a::Thing]; }\n",
        ),
    ]);
    assert_eq!(
        problems,
        ["cycle in policy: a -> b -> c -> a\n    a -> b: src/policy/a.rs:1\n    b -> c: src/policy/b.rs:2\n    c -> a: src/policy/c.rs:1"]
    );
}

#[test]
fn an_acyclic_tree_passes_and_prints_its_graph() {
    let dir = tree(&[
        (
            "src/policy/mod.rs",
            "pub mod a;\npub mod b;\nmod c;\npub use c::Thing;\n#[cfg(test)]\nmod tests;\n",
        ),
        // Through the re-export in mod.rs: an edge to `c`, none to the root.
        ("src/policy/a.rs", "use super::{b, Thing};\n"),
        ("src/policy/b.rs", "pub fn f() { let _ = format!(\"{:?}\", super::c::Thing); }\n"),
        (
            "src/policy/c.rs",
            "#[derive(Debug)]\npub struct Thing;\n#[cfg(test)]\nmod tests { use crate::policy::a; }\n#[cfg(test)]\nuse super::a::*;\n",
        ),
        ("src/policy/tests.rs", "use super::a;\n"),
    ]);
    let graph = check(dir.path(), "policy", LAYERS[0].1).unwrap();
    assert_eq!(graph.problems(), Vec::<String>::new());
    assert_eq!(
        graph.render(),
        "policy modules and what each imports:\n  a -> b, c\n  b -> c\n  c -> \n"
    );
}

#[test]
fn an_import_of_a_layer_above_is_refused() {
    let problems = problems_of(&[
        ("src/policy/mod.rs", "pub mod a;\n"),
        (
            "src/policy/a.rs",
            "use crate::filter::host::Host;\nfn f() { crate::cli::run(); }\n",
        ),
    ]);
    assert_eq!(
        problems,
        [
            "src/policy/a.rs:1: policy imports crate::filter::host::Host",
            "src/policy/a.rs:2: policy imports crate::cli::run",
        ]
    );
}
