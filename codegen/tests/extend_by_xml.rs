//! Extending the protocol by editing XML, end to end: an overlay adding a class with two
//! methods goes through the real generator, and the Rust it writes parses and contains
//! the new structs, `Method` variants, handler traits and dispatch entries.

mod support;

use std::fs;

use syn::visit::Visit;

#[derive(Default)]
struct Items {
    structs: Vec<String>,
    enum_variants: Vec<(String, String)>,
    trait_fns: Vec<(String, String)>,
    supertraits: Vec<(String, String)>,
    match_arms: Vec<String>,
}

impl<'ast> Visit<'ast> for Items {
    fn visit_item_struct(&mut self, i: &'ast syn::ItemStruct) {
        self.structs.push(i.ident.to_string());
        syn::visit::visit_item_struct(self, i);
    }
    fn visit_item_enum(&mut self, i: &'ast syn::ItemEnum) {
        for v in &i.variants {
            self.enum_variants
                .push((i.ident.to_string(), v.ident.to_string()));
        }
        syn::visit::visit_item_enum(self, i);
    }
    fn visit_item_trait(&mut self, i: &'ast syn::ItemTrait) {
        for bound in &i.supertraits {
            if let syn::TypeParamBound::Trait(t) = bound {
                let name = t.path.segments.last().unwrap().ident.to_string();
                self.supertraits.push((i.ident.to_string(), name));
            }
        }
        for item in &i.items {
            if let syn::TraitItem::Fn(f) = item {
                self.trait_fns
                    .push((i.ident.to_string(), f.sig.ident.to_string()));
            }
        }
        syn::visit::visit_item_trait(self, i);
    }
    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        let pat = &arm.pat;
        self.match_arms.push(quote::quote!(#pat).to_string());
        syn::visit::visit_arm(self, arm);
    }
}

fn parse(files: &[codegen::GeneratedFile], name: &str) -> Items {
    let file = files
        .iter()
        .find(|f| f.path.ends_with(name))
        .unwrap_or_else(|| panic!("{name} was not generated"));
    let ast: syn::File =
        syn::parse_file(&file.contents).unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
    let mut items = Items::default();
    items.visit_file(&ast);
    items
}

#[test]
fn an_overlay_class_becomes_structs_variants_and_dispatch_entries() {
    let dir = support::copy_spec();
    fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/welcome.xml"),
        dir.path().join("welcome.xml"),
    )
    .unwrap();
    support::add_layer(dir.path(), "welcome.xml");

    let files = codegen::generate(dir.path()).expect("generation succeeds");

    let methods = parse(&files, "methods.rs");
    for s in ["WelcomeHello", "WelcomeHelloOk"] {
        assert!(methods.structs.iter().any(|x| x == s), "no struct {s}");
        assert!(
            methods.enum_variants.contains(&("Method".into(), s.into())),
            "no Method::{s}"
        );
    }
    // Decoding is keyed by (class, method): the new ids appear in the decoder.
    assert!(
        methods.match_arms.iter().any(|a| a == "(200 , 10)"),
        "no decode arm for (200, 10): {:?}",
        &methods.match_arms[..5]
    );

    let dispatch = parse(&files, "dispatch.rs");
    // The new class gets one handler trait per receiving side, holding only its methods,
    // and each side's umbrella trait requires it.
    let fns_of = |t: &str| -> Vec<&str> {
        dispatch
            .trait_fns
            .iter()
            .filter(|(tr, _)| tr == t)
            .map(|(_, f)| f.as_str())
            .collect()
    };
    assert_eq!(fns_of("WelcomeServer"), ["welcome_hello"]);
    assert_eq!(fns_of("WelcomeClient"), ["welcome_hello_ok"]);
    for (t, base, umbrella) in [
        ("WelcomeServer", "ServerHandler", "ServerMethods"),
        ("WelcomeClient", "ClientHandler", "ClientMethods"),
    ] {
        assert!(
            dispatch.supertraits.contains(&(t.into(), base.into())),
            "{t} does not extend {base}"
        );
        assert!(
            dispatch.supertraits.contains(&(umbrella.into(), t.into())),
            "{umbrella} does not require {t}"
        );
    }
    assert!(
        !dispatch
            .trait_fns
            .iter()
            .any(|(t, f)| f.starts_with("welcome_") && !t.starts_with("Welcome")),
        "a welcome handler landed in another class's trait"
    );
    // Each side's dispatcher routes one and refuses the other.
    assert!(
        dispatch
            .match_arms
            .iter()
            .any(|a| a == "Method :: WelcomeHello (m)")
    );
    assert!(
        dispatch
            .match_arms
            .iter()
            .any(|a| a == "Method :: WelcomeHelloOk (m)")
    );

    // The generated struct has the fields the XML declares, with the right types.
    let methods_rs = &files
        .iter()
        .find(|f| f.path.ends_with("methods.rs"))
        .unwrap()
        .contents;
    assert!(methods_rs.contains("pub name: ShortString"));
    assert!(methods_rs.contains("pub loud: bool"));
    assert!(methods_rs.contains("pub extras: FieldTable"));
    assert!(methods_rs.contains("pub reply: Bytes"));
}

#[test]
fn the_real_spec_generates_files_that_parse() {
    let files = codegen::generate(&support::real_spec_dir()).expect("generation succeeds");
    for f in files
        .iter()
        .filter(|f| f.path.extension().is_some_and(|e| e == "rs"))
    {
        syn::parse_file(&f.contents)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", f.path.display()));
        assert!(
            f.contents
                .starts_with("// Generated by `cargo xtask codegen`"),
            "{} lacks the preamble",
            f.path.display()
        );
    }
}

#[test]
fn a_service_overlay_becomes_a_service_trait_and_wrapper_and_stays_out_of_dispatch() {
    let dir = support::copy_spec();
    fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/echo_service.xml"
        ),
        dir.path().join("echo_service.xml"),
    )
    .unwrap();
    support::add_layer(dir.path(), "echo_service.xml");
    let files = codegen::generate(dir.path()).expect("generation succeeds");

    let services = parse(&files, "services.rs");
    let fns: Vec<&str> = services
        .trait_fns
        .iter()
        .filter(|(t, _)| t == "EchoService")
        .map(|(_, f)| f.as_str())
        .collect();
    assert_eq!(fns, ["ping", "pong"]);
    assert!(services.structs.iter().any(|s| s == "Echo"), "no wrapper");
    let text = &files
        .iter()
        .find(|f| f.path.ends_with("services.rs"))
        .unwrap()
        .contents;
    assert!(text.contains("pub const ECHO: ServiceInfo"), "{text}");
    assert!(text.contains("class_id: 1900"));
    assert!(text.contains("version: 2"));
    assert!(text.contains("impl<S: EchoService> ServiceHandler for Echo<S>"));

    // Neither side's dispatch has a handler for a peer method: the tunnel runtime takes them.
    let dispatch = parse(&files, "dispatch.rs");
    assert!(
        !dispatch
            .trait_fns
            .iter()
            .any(|(_, f)| f.starts_with("echo_"))
    );
    assert!(
        !dispatch
            .match_arms
            .iter()
            .any(|a| a == "Method :: EchoPing (m)")
    );
}
