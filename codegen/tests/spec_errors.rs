//! A broken spec is an error naming file and line, never a panic.

mod support;

use support::spec_with;

const MANIFEST: &str = r#"<protocol><layer file="base.xml"/></protocol>"#;
const MANIFEST2: &str = r#"<protocol><layer file="base.xml"/><layer file="over.xml"/></protocol>"#;

fn base(classes: &str) -> String {
    format!(
        r#"<amqp major="0" minor="9" revision="1" port="5672">
<domain name="shortstr" type="shortstr"/>
<domain name="bit" type="bit"/>
{classes}
</amqp>"#
    )
}

fn error_of(files: &[(&str, &str)]) -> String {
    let dir = spec_with(files);
    match codegen::load(dir.path()) {
        Ok(_) => panic!("the spec was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unknown_domain_names_its_line() {
    let b = base(
        r#"<class name="c" index="10">
<method name="m" index="10"><chassis name="server"/>
<field name="f" domain="nonesuch"/>
</method></class>"#,
    );
    let e = error_of(&[("protocol.xml", MANIFEST), ("base.xml", &b)]);
    assert_eq!(e, "base.xml:6: unknown domain `nonesuch`");
}

#[test]
fn duplicate_method_index_in_one_class() {
    let b = base(
        r#"<class name="c" index="10">
<method name="a" index="10"><chassis name="server"/></method>
<method name="b" index="10"><chassis name="server"/></method>
</class>"#,
    );
    let e = error_of(&[("protocol.xml", MANIFEST), ("base.xml", &b)]);
    assert!(
        e.starts_with("base.xml:6: method index 10 of class `c` is already `a`"),
        "{e}"
    );
    assert!(e.ends_with("(clashes with base.xml:5)"), "{e}");
}

#[test]
fn duplicate_method_name_in_one_file() {
    let b = base(
        r#"<class name="c" index="10">
<method name="a" index="10"><chassis name="server"/></method>
<method name="a" index="11"><chassis name="server"/></method>
</class>"#,
    );
    let e = error_of(&[("protocol.xml", MANIFEST), ("base.xml", &b)]);
    assert!(e.contains("method `c.a` is declared twice"), "{e}");
}

#[test]
fn response_naming_no_method() {
    let b = base(
        r#"<class name="c" index="10">
<method name="a" index="10" synchronous="1"><chassis name="server"/><response name="a-ok"/></method>
</class>"#,
    );
    let e = error_of(&[("protocol.xml", MANIFEST), ("base.xml", &b)]);
    assert_eq!(
        e,
        "base.xml:5: response `a-ok` of `c.a` names no method of class `c`"
    );
}

#[test]
fn content_on_a_class_without_properties() {
    let b = base(
        r#"<class name="c" index="10">
<method name="a" index="10" content="1"><chassis name="server"/></method>
</class>"#,
    );
    let e = error_of(&[("protocol.xml", MANIFEST), ("base.xml", &b)]);
    assert!(e.starts_with("base.xml:5: `c.a` carries content"), "{e}");
}

#[test]
fn method_without_chassis() {
    let b = base(r#"<class name="c" index="10"><method name="a" index="10"/></class>"#);
    let e = error_of(&[("protocol.xml", MANIFEST), ("base.xml", &b)]);
    assert!(e.contains("names no <chassis>"), "{e}");
}

#[test]
fn overlay_class_index_clash_names_both_files() {
    let b = base(
        r#"<class name="c" index="10"><method name="a" index="10"><chassis name="server"/></method></class>"#,
    );
    let o = r#"<amqp overlay="o">
<class name="d" index="10"><method name="x" index="10"><chassis name="server"/></method></class>
</amqp>"#;
    let e = error_of(&[
        ("protocol.xml", MANIFEST2),
        ("base.xml", &b),
        ("over.xml", o),
    ]);
    assert_eq!(
        e,
        "over.xml:2: class index 10 is already class `c` (clashes with base.xml:4)"
    );
}

#[test]
fn overlay_method_with_another_shape_clashes() {
    let b = base(
        r#"<class name="c" index="10"><method name="a" index="10"><chassis name="server"/></method></class>"#,
    );
    let o = r#"<amqp overlay="o">
<class name="c" index="10">
  <method name="a" index="10"><chassis name="server"/><field name="f" domain="bit"/></method>
</class>
</amqp>"#;
    let e = error_of(&[
        ("protocol.xml", MANIFEST2),
        ("base.xml", &b),
        ("over.xml", o),
    ]);
    assert_eq!(
        e,
        "over.xml:3: method `c.a` redeclared with a different shape (clashes with base.xml:4)"
    );
}

#[test]
fn overlay_repeating_identical_items_is_accepted() {
    let b = base(
        r#"<class name="c" index="10"><method name="a" index="10"><chassis name="server"/></method></class>"#,
    );
    let o = r#"<amqp overlay="o">
<domain name="bit" type="bit"/>
<class name="c" index="10"><method name="a" index="10"><chassis name="server"/></method></class>
</amqp>"#;
    let dir = spec_with(&[
        ("protocol.xml", MANIFEST2),
        ("base.xml", &b),
        ("over.xml", o),
    ]);
    let loaded = codegen::load(dir.path()).expect("identical repeats are fine");
    assert_eq!(loaded.spec.classes[0].methods.len(), 1);
}

#[test]
fn domain_with_another_type_clashes() {
    let b = base("");
    let o = r#"<amqp overlay="o"><domain name="bit" type="octet"/></amqp>"#;
    let e = error_of(&[
        ("protocol.xml", MANIFEST2),
        ("base.xml", &b),
        ("over.xml", o),
    ]);
    assert!(e.starts_with("over.xml:1: domain `bit` redeclared"), "{e}");
}

#[test]
fn domain_cycle() {
    let b = r#"<amqp major="0" minor="9" revision="1" port="5672">
<domain name="a" type="b"/>
<domain name="b" type="a"/>
</amqp>"#;
    let e = error_of(&[("protocol.xml", MANIFEST), ("base.xml", b)]);
    assert!(e.contains("cycle"), "{e}");
}

#[test]
fn malformed_xml() {
    let e = error_of(&[
        ("protocol.xml", MANIFEST),
        ("base.xml", "<amqp>\n<class name=\"x\">\n</amqp>"),
    ]);
    assert!(e.starts_with("base.xml:"), "{e}");
    assert!(e.contains("malformed XML"), "{e}");
}

#[test]
fn unknown_attribute_is_refused_not_ignored() {
    let b = base(
        r#"<class name="c" index="10"><method name="a" index="10" sync="1"><chassis name="server"/></method></class>"#,
    );
    let e = error_of(&[("protocol.xml", MANIFEST), ("base.xml", &b)]);
    assert!(e.contains("unexpected attribute `sync`"), "{e}");
}

#[test]
fn extend_may_only_replace_reserved_fields_of_the_same_type() {
    let b = base(
        r#"<domain name="short" type="short"/>
<class name="c" index="10"><method name="a" index="10"><chassis name="server"/>
<field name="reserved-1" domain="short" reserved="1"/><field name="g" domain="bit"/></method></class>"#,
    );
    let wrong_type = r#"<amqp overlay="o"><class name="c" index="10">
<method name="a" extend="1"><field name="flag" replaces="reserved-1" domain="bit"/></method>
</class></amqp>"#;
    let e = error_of(&[
        ("protocol.xml", MANIFEST2),
        ("base.xml", &b),
        ("over.xml", wrong_type),
    ]);
    assert!(e.contains("must have the wire type"), "{e}");

    let not_reserved = r#"<amqp overlay="o"><class name="c" index="10">
<method name="a" extend="1"><field name="flag" replaces="g" domain="bit"/></method>
</class></amqp>"#;
    let e = error_of(&[
        ("protocol.xml", MANIFEST2),
        ("base.xml", &b),
        ("over.xml", not_reserved),
    ]);
    assert!(e.contains("only a reserved field can be replaced"), "{e}");

    let good = r#"<amqp overlay="o"><class name="c" index="10">
<method name="a" extend="1"><chassis name="client"/><field name="ticket" replaces="reserved-1" domain="short"/></method>
</class></amqp>"#;
    let dir = spec_with(&[
        ("protocol.xml", MANIFEST2),
        ("base.xml", &b),
        ("over.xml", good),
    ]);
    let loaded = codegen::load(dir.path()).expect("valid extension");
    let m = &loaded.spec.classes[0].methods[0];
    assert!(m.receivers.client && m.receivers.server);
    assert_eq!(m.fields[0].name, "ticket");
    assert!(!m.fields[0].reserved);
}

#[test]
fn missing_file_is_an_io_error_not_a_panic() {
    let e = error_of(&[("protocol.xml", MANIFEST)]);
    assert!(e.contains("base.xml"), "{e}");
}

#[test]
fn tunnel_service_rules() {
    let cases = [
        (
            r#"<class name="c" index="10" version="1"><method name="a" index="10"><chassis name="peer"/></method></class>"#,
            "only tunnel service classes (ids 1000-1999) have a version",
        ),
        (
            r#"<class name="c" index="1000"><method name="a" index="10"><chassis name="peer"/></method></class>"#,
            "tunnel service class `c` needs a version",
        ),
        (
            r#"<class name="c" index="1000" version="1"><method name="a" index="10"><chassis name="server"/></method></class>"#,
            "a tunnel service's methods have the peer chassis and no content",
        ),
        (
            r#"<class name="c" index="1000" version="1"><method name="a" index="10"><chassis name="peer"/><chassis name="server"/></method></class>"#,
            "names no client or server chassis",
        ),
    ];
    for (class, want) in cases {
        let b = base(class);
        let e = error_of(&[("protocol.xml", MANIFEST), ("base.xml", &b)]);
        assert!(e.contains(want), "{class}: {e}");
    }
}
