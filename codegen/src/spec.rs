//! Reading the spec layers and merging them into one checked [`Spec`].
//!
//! The manifest (`spec/protocol.xml`) names the layers in merge order. Each layer is
//! read into raw items that still name their domains; after every layer is merged, the
//! domains are resolved and the whole is checked. Every refusal names a file and line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Loc, Result};
use crate::model::{
    Class, Constant, ConstantType, Domain, ErrorClass, Field, Method, Primitive, Receivers,
    SERVICE_CLASS_IDS, Spec,
};
use crate::xml::{self, Element};

/// The manifest: which files make up the protocol, in merge order.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub layers: Vec<PathBuf>,
    pub peer_agent: Option<PathBuf>,
    /// Event-driven state machines (`<state-machine file=…>`), in manifest order.
    pub state_machines: Vec<PathBuf>,
}

/// Reads `protocol.xml` in `spec_dir`.
pub fn read_manifest(spec_dir: &Path) -> Result<Manifest> {
    let path = spec_dir.join("protocol.xml");
    let root = xml::read_file(&path)?;
    if root.name != "protocol" {
        return Err(Error::spec(
            &root.loc,
            "the manifest's root must be <protocol>",
        ));
    }
    root.only_children(&["layer", "peer-agent", "state-machine", "doc"])?;
    let mut layers = Vec::new();
    let mut peer_agent = None;
    let mut state_machines = Vec::new();
    for el in &root.children {
        match el.name.as_str() {
            "layer" => layers.push(spec_dir.join(el.required("file")?)),
            "peer-agent" => {
                if peer_agent.is_some() {
                    return Err(Error::spec(&el.loc, "only one <peer-agent> may be named"));
                }
                peer_agent = Some(spec_dir.join(el.required("file")?));
            }
            "state-machine" => state_machines.push(spec_dir.join(el.required("file")?)),
            _ => {}
        }
    }
    if layers.is_empty() {
        return Err(Error::spec(&root.loc, "the manifest names no <layer>"));
    }
    Ok(Manifest {
        layers,
        peer_agent,
        state_machines,
    })
}

/// Reads and merges the layers, in order, into a checked [`Spec`].
pub fn load_layers(layers: &[PathBuf]) -> Result<Spec> {
    let mut merger = Merger::default();
    for (i, path) in layers.iter().enumerate() {
        let root = xml::read_file(path)?;
        merger.layer(i, &root)?;
    }
    merger.finish()
}

/// A field before its domain is resolved.
#[derive(Debug, Clone, PartialEq)]
struct RawField {
    name: String,
    domain: String,
    reserved: bool,
    doc: Option<String>,
    loc: Loc,
}

impl RawField {
    fn same_shape(&self, other: &RawField) -> bool {
        self.name == other.name && self.domain == other.domain && self.reserved == other.reserved
    }
}

#[derive(Debug, Clone)]
struct RawMethod {
    name: String,
    index: u16,
    synchronous: bool,
    content: bool,
    responses: Vec<String>,
    receivers: Receivers,
    fields: Vec<RawField>,
    doc: Option<String>,
    loc: Loc,
    layer: usize,
}

impl RawMethod {
    fn same_shape(&self, other: &RawMethod) -> bool {
        self.name == other.name
            && self.index == other.index
            && self.synchronous == other.synchronous
            && self.content == other.content
            && self.responses == other.responses
            && self.receivers == other.receivers
            && self.fields.len() == other.fields.len()
            && self
                .fields
                .iter()
                .zip(&other.fields)
                .all(|(a, b)| a.same_shape(b))
    }
}

#[derive(Debug, Clone)]
struct RawClass {
    name: String,
    index: u16,
    properties: Vec<(RawField, usize)>,
    methods: Vec<RawMethod>,
    version: Option<u16>,
    doc: Option<String>,
    loc: Loc,
    layer: usize,
}

#[derive(Debug, Clone)]
struct RawDomain {
    name: String,
    ty: String,
    loc: Loc,
    layer: usize,
}

#[derive(Default)]
struct Merger {
    header: Option<(u8, u8, u8, u16)>,
    constants: Vec<(Constant, usize)>,
    domains: Vec<RawDomain>,
    classes: Vec<RawClass>,
    /// Reserved fields an overlay gave a name: (old domain, new field), type-checked once
    /// domains are resolved.
    replaced_fields: Vec<(String, RawField)>,
}

impl Merger {
    fn layer(&mut self, layer: usize, root: &Element) -> Result<()> {
        if root.name != "amqp" {
            return Err(Error::spec(&root.loc, "a layer's root must be <amqp>"));
        }
        root.only_attrs(&["major", "minor", "revision", "port", "overlay", "comment"])?;
        root.only_children(&["constant", "domain", "class", "doc"])?;
        match (layer, root.attr("overlay")) {
            (0, None) => {
                self.header = Some((
                    root.number("major")?,
                    root.number("minor")?,
                    root.number("revision")?,
                    root.number("port")?,
                ));
            }
            (0, Some(_)) => {
                return Err(Error::spec(
                    &root.loc,
                    "the first layer is the base protocol and must not be an overlay",
                ));
            }
            (_, None) => {
                return Err(Error::spec(
                    &root.loc,
                    "a layer after the first must be an overlay: <amqp overlay=\"name\">",
                ));
            }
            (_, Some(_)) => {}
        }
        for el in &root.children {
            match el.name.as_str() {
                "constant" => self.constant(layer, el)?,
                "domain" => self.domain(layer, el)?,
                "class" => self.class(layer, el)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn constant(&mut self, layer: usize, el: &Element) -> Result<()> {
        el.only_attrs(&["name", "value", "type", "class"])?;
        el.only_children(&["doc"])?;
        let name = el.required("name")?.to_string();
        let value: u32 = el.number("value")?;
        let ty = match el.attr("type") {
            None | Some("long") => ConstantType::Long,
            Some("short") => ConstantType::Short,
            Some("octet") => ConstantType::Octet,
            Some(other) => {
                return Err(Error::spec(
                    &el.loc,
                    format!("constant type must be octet, short or long, not {other:?}"),
                ));
            }
        };
        let fits = match ty {
            ConstantType::Octet => value <= u8::MAX as u32,
            ConstantType::Short => value <= u16::MAX as u32,
            ConstantType::Long => true,
        };
        if !fits {
            return Err(Error::spec(
                &el.loc,
                format!("{value} does not fit the constant's type"),
            ));
        }
        let class = match el.attr("class") {
            None => None,
            Some("soft-error") => Some(ErrorClass::Soft),
            Some("hard-error") => Some(ErrorClass::Hard),
            Some(other) => {
                return Err(Error::spec(
                    &el.loc,
                    format!("constant class must be soft-error or hard-error, not {other:?}"),
                ));
            }
        };
        if class.is_some() && value > u16::MAX as u32 {
            return Err(Error::spec(&el.loc, "a reply code must fit in a short"));
        }
        let c = Constant {
            name,
            value,
            ty,
            class,
            doc: el.doc(),
            loc: el.loc.clone(),
        };
        if let Some((old, old_layer)) = self.constants.iter().find(|(o, _)| o.name == c.name) {
            if *old_layer == layer {
                return Err(Error::clash(
                    &c.loc,
                    &old.loc,
                    format!("constant `{}` is declared twice", c.name),
                ));
            }
            if (old.value, old.ty, old.class) != (c.value, c.ty, c.class) {
                return Err(Error::clash(
                    &c.loc,
                    &old.loc,
                    format!(
                        "constant `{}` redeclared with another value, type or class",
                        c.name
                    ),
                ));
            }
            return Ok(());
        }
        if c.is_reply_code() {
            if let Some((old, _)) = self
                .constants
                .iter()
                .find(|(o, _)| o.is_reply_code() && o.value == c.value)
            {
                return Err(Error::clash(
                    &c.loc,
                    &old.loc,
                    format!("reply code {} is already `{}`", c.value, old.name),
                ));
            }
        }
        self.constants.push((c, layer));
        Ok(())
    }

    fn domain(&mut self, layer: usize, el: &Element) -> Result<()> {
        el.only_attrs(&["name", "type", "label"])?;
        el.only_children(&["doc", "assert", "rule"])?;
        let d = RawDomain {
            name: el.required("name")?.to_string(),
            ty: el.required("type")?.to_string(),
            loc: el.loc.clone(),
            layer,
        };
        if let Some(old) = self.domains.iter().find(|o| o.name == d.name) {
            if old.layer == layer {
                return Err(Error::clash(
                    &d.loc,
                    &old.loc,
                    format!("domain `{}` is declared twice", d.name),
                ));
            }
            if old.ty != d.ty {
                return Err(Error::clash(
                    &d.loc,
                    &old.loc,
                    format!(
                        "domain `{}` redeclared as `{}` (was `{}`)",
                        d.name, d.ty, old.ty
                    ),
                ));
            }
            return Ok(());
        }
        self.domains.push(d);
        Ok(())
    }

    fn class(&mut self, layer: usize, el: &Element) -> Result<()> {
        el.only_attrs(&["name", "index", "handler", "label", "version"])?;
        el.only_children(&["doc", "chassis", "field", "method", "rule"])?;
        let name = el.required("name")?.to_string();
        let index: u16 = el.number("index")?;
        let pos = match self.classes.iter().position(|c| c.name == name) {
            Some(pos) => {
                let old = &self.classes[pos];
                if old.index != index {
                    return Err(Error::clash(
                        &el.loc,
                        &old.loc,
                        format!(
                            "class `{name}` has index {} here but {} before",
                            index, old.index
                        ),
                    ));
                }
                if old.layer == layer {
                    return Err(Error::clash(
                        &el.loc,
                        &old.loc,
                        format!("class `{name}` is declared twice"),
                    ));
                }
                pos
            }
            None => {
                if let Some(old) = self.classes.iter().find(|c| c.index == index) {
                    return Err(Error::clash(
                        &el.loc,
                        &old.loc,
                        format!("class index {index} is already class `{}`", old.name),
                    ));
                }
                self.classes.push(RawClass {
                    name: name.clone(),
                    index,
                    properties: Vec::new(),
                    methods: Vec::new(),
                    version: None,
                    doc: el.doc(),
                    loc: el.loc.clone(),
                    layer,
                });
                self.classes.len() - 1
            }
        };
        if el.attr("version").is_some() {
            if !SERVICE_CLASS_IDS.contains(&index) {
                return Err(Error::spec(
                    &el.loc,
                    format!(
                        "only tunnel service classes (ids {}-{}) have a version",
                        SERVICE_CLASS_IDS.start(),
                        SERVICE_CLASS_IDS.end()
                    ),
                ));
            }
            self.classes[pos].version = Some(el.number("version")?);
        }
        for child in &el.children {
            match child.name.as_str() {
                "field" => {
                    let f = raw_field(child)?;
                    let class = &mut self.classes[pos];
                    if let Some((old, old_layer)) =
                        class.properties.iter().find(|(p, _)| p.name == f.name)
                    {
                        if *old_layer == layer || !old.same_shape(&f) {
                            return Err(Error::clash(
                                &f.loc,
                                &old.loc,
                                format!("property `{}` of class `{name}` declared twice", f.name),
                            ));
                        }
                        continue;
                    }
                    class.properties.push((f, layer));
                }
                "method" if child.attr("extend").is_some() => {
                    if !child.flag("extend")? {
                        continue;
                    }
                    let replaced = extend_method(layer, &name, &mut self.classes[pos], child)?;
                    self.replaced_fields.extend(replaced);
                }
                "method" => {
                    let m = raw_method(layer, child)?;
                    let class = &mut self.classes[pos];
                    if let Some(old) = class.methods.iter().find(|o| o.name == m.name) {
                        if old.layer == layer {
                            return Err(Error::clash(
                                &m.loc,
                                &old.loc,
                                format!("method `{name}.{}` is declared twice", m.name),
                            ));
                        }
                        if !old.same_shape(&m) {
                            return Err(Error::clash(
                                &m.loc,
                                &old.loc,
                                format!(
                                    "method `{name}.{}` redeclared with a different shape",
                                    m.name
                                ),
                            ));
                        }
                        continue;
                    }
                    if let Some(old) = class.methods.iter().find(|o| o.index == m.index) {
                        return Err(Error::clash(
                            &m.loc,
                            &old.loc,
                            format!(
                                "method index {} of class `{name}` is already `{}`",
                                m.index, old.name
                            ),
                        ));
                    }
                    class.methods.push(m);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Spec> {
        let (major, minor, revision, port) = self.header.unwrap_or_default();
        let domains = resolve_domains(&self.domains)?;
        let lookup = |f: &RawField| -> Result<Field> {
            let ty = match domains.get(f.domain.as_str()) {
                Some(ty) => *ty,
                None => match Primitive::from_name(&f.domain) {
                    Some(ty) => ty,
                    None => {
                        return Err(Error::spec(
                            &f.loc,
                            format!("unknown domain `{}`", f.domain),
                        ));
                    }
                },
            };
            Ok(Field {
                name: f.name.clone(),
                domain: f.domain.clone(),
                ty,
                reserved: f.reserved,
                doc: f.doc.clone(),
                loc: f.loc.clone(),
            })
        };
        for (old_domain, f) in &self.replaced_fields {
            let old = lookup(&RawField {
                domain: old_domain.clone(),
                ..f.clone()
            })?;
            if lookup(f)?.ty != old.ty {
                return Err(Error::spec(
                    &f.loc,
                    format!(
                        "`{}` must have the wire type of the reserved field it replaces",
                        f.name
                    ),
                ));
            }
        }
        let mut classes = Vec::new();
        for rc in &self.classes {
            let properties = rc
                .properties
                .iter()
                .map(|(f, _)| lookup(f))
                .collect::<Result<Vec<_>>>()?;
            let mut methods = Vec::new();
            for rm in &rc.methods {
                if rm.content && rc.properties.is_empty() {
                    return Err(Error::spec(
                        &rm.loc,
                        format!(
                            "`{}.{}` carries content but class `{}` declares no content properties",
                            rc.name, rm.name, rc.name
                        ),
                    ));
                }
                for r in &rm.responses {
                    if !rc.methods.iter().any(|m| &m.name == r) {
                        return Err(Error::spec(
                            &rm.loc,
                            format!(
                                "response `{r}` of `{}.{}` names no method of class `{}`",
                                rc.name, rm.name, rc.name
                            ),
                        ));
                    }
                }
                methods.push(Method {
                    name: rm.name.clone(),
                    index: rm.index,
                    synchronous: rm.synchronous,
                    content: rm.content,
                    responses: rm.responses.clone(),
                    receivers: rm.receivers,
                    fields: rm.fields.iter().map(&lookup).collect::<Result<Vec<_>>>()?,
                    doc: rm.doc.clone(),
                    loc: rm.loc.clone(),
                });
            }
            methods.sort_by_key(|m| m.index);
            if SERVICE_CLASS_IDS.contains(&rc.index) {
                if rc.version.is_none() {
                    return Err(Error::spec(
                        &rc.loc,
                        format!("tunnel service class `{}` needs a version", rc.name),
                    ));
                }
                if let Some(m) = methods.iter().find(|m| !m.receivers.peer || m.content) {
                    return Err(Error::spec(
                        &m.loc,
                        format!(
                            "`{}.{}`: a tunnel service's methods have the peer chassis and no content",
                            rc.name, m.name
                        ),
                    ));
                }
            }
            classes.push(Class {
                name: rc.name.clone(),
                index: rc.index,
                properties,
                methods,
                version: rc.version,
                doc: rc.doc.clone(),
                loc: rc.loc.clone(),
            });
        }
        classes.sort_by_key(|c| c.index);
        let mut domain_list: Vec<Domain> = self
            .domains
            .iter()
            .map(|d| Domain {
                name: d.name.clone(),
                ty: domains[d.name.as_str()],
                loc: d.loc.clone(),
            })
            .collect();
        domain_list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Spec {
            major,
            minor,
            revision,
            port,
            constants: self.constants.into_iter().map(|(c, _)| c).collect(),
            domains: domain_list,
            classes,
        })
    }
}

/// An overlay's `<method name=… extend="1">`: adds receivers to a method an earlier layer
/// declared, and may give a reserved field a name and meaning (`<field name="internal"
/// replaces="reserved-3" domain="bit"/>`), as RabbitMQ does. The wire layout is unchanged.
fn extend_method(
    layer: usize,
    class_name: &str,
    class: &mut RawClass,
    el: &Element,
) -> Result<Vec<(String, RawField)>> {
    el.only_attrs(&["name", "extend"])?;
    el.only_children(&["doc", "chassis", "field"])?;
    let name = el.required("name")?;
    let Some(method) = class.methods.iter_mut().find(|m| m.name == name) else {
        return Err(Error::spec(
            &el.loc,
            format!("extend: class `{class_name}` has no method `{name}` to extend"),
        ));
    };
    if method.layer == layer {
        return Err(Error::clash(
            &el.loc,
            &method.loc,
            "extend a method from an earlier layer, not one declared in the same file",
        ));
    }
    for ch in el.children_named("chassis") {
        ch.only_attrs(&["name", "implement"])?;
        match ch.required("name")? {
            "client" => method.receivers.client = true,
            "server" => method.receivers.server = true,
            other => {
                return Err(Error::spec(
                    &ch.loc,
                    format!("extend adds a client or server chassis, not {other:?}"),
                ));
            }
        }
    }
    let mut replaced = Vec::new();
    for f in el.children_named("field") {
        let target = f.required("replaces")?;
        let new = raw_field(f)?;
        if method.fields.iter().any(|o| o.name == new.name) {
            return Err(Error::spec(
                &f.loc,
                format!("field `{}` already exists", new.name),
            ));
        }
        let Some(old) = method.fields.iter_mut().find(|o| o.name == target) else {
            return Err(Error::spec(
                &f.loc,
                format!("no field `{target}` to replace in `{class_name}.{name}`"),
            ));
        };
        if !old.reserved {
            return Err(Error::clash(
                &f.loc,
                &old.loc,
                format!("only a reserved field can be replaced; `{target}` is not"),
            ));
        }
        replaced.push((old.domain.clone(), new.clone()));
        *old = new;
    }
    Ok(replaced)
}

fn raw_field(el: &Element) -> Result<RawField> {
    el.only_attrs(&["name", "domain", "type", "reserved", "label", "replaces"])?;
    el.only_children(&["doc", "assert", "rule"])?;
    // The published XML uses `type` for a few fields instead of `domain`; accept both.
    let domain = match (el.attr("domain"), el.attr("type")) {
        (Some(d), None) | (None, Some(d)) => d.to_string(),
        _ => {
            return Err(Error::spec(
                &el.loc,
                "a <field> needs exactly one of `domain` or `type`",
            ));
        }
    };
    Ok(RawField {
        name: el.required("name")?.to_string(),
        domain,
        reserved: el.flag("reserved")?,
        doc: el.doc(),
        loc: el.loc.clone(),
    })
}

fn raw_method(layer: usize, el: &Element) -> Result<RawMethod> {
    el.only_attrs(&[
        "name",
        "index",
        "synchronous",
        "content",
        "label",
        "deprecated",
    ])?;
    el.only_children(&["doc", "chassis", "response", "field", "rule"])?;
    let name = el.required("name")?.to_string();
    let mut receivers = Receivers::default();
    for ch in el.children_named("chassis") {
        ch.only_attrs(&["name", "implement"])?;
        let slot = match ch.required("name")? {
            "client" => &mut receivers.client,
            "server" => &mut receivers.server,
            "peer" => &mut receivers.peer,
            other => {
                return Err(Error::spec(
                    &ch.loc,
                    format!("chassis must be client, server or peer, not {other:?}"),
                ));
            }
        };
        if *slot {
            return Err(Error::spec(&ch.loc, "chassis named twice"));
        }
        *slot = true;
    }
    if receivers.peer && (receivers.client || receivers.server) {
        return Err(Error::spec(
            &el.loc,
            format!(
                "method `{name}`: a peer method is sent by either side of a tunnel, so it names no client or server chassis"
            ),
        ));
    }
    if !receivers.client && !receivers.server && !receivers.peer {
        return Err(Error::spec(
            &el.loc,
            format!("method `{name}` names no <chassis> (who receives it?)"),
        ));
    }
    let mut responses = Vec::new();
    for r in el.children_named("response") {
        r.only_attrs(&["name"])?;
        let n = r.required("name")?.to_string();
        if responses.contains(&n) {
            return Err(Error::spec(&r.loc, format!("response `{n}` listed twice")));
        }
        responses.push(n);
    }
    let synchronous = el.flag("synchronous")?;
    if !responses.is_empty() && !synchronous {
        return Err(Error::spec(
            &el.loc,
            format!("method `{name}` lists responses but is not synchronous"),
        ));
    }
    let mut fields: Vec<RawField> = Vec::new();
    for f in el.children_named("field") {
        let f = raw_field(f)?;
        if let Some(old) = fields.iter().find(|o| o.name == f.name) {
            return Err(Error::clash(
                &f.loc,
                &old.loc,
                format!("field `{}` declared twice", f.name),
            ));
        }
        fields.push(f);
    }
    Ok(RawMethod {
        name,
        index: el.number("index")?,
        synchronous,
        content: el.flag("content")?,
        responses,
        receivers,
        fields,
        doc: el.doc(),
        loc: el.loc.clone(),
        layer,
    })
}

/// Follows each domain to its primitive; unknown names and cycles are errors.
fn resolve_domains(raw: &[RawDomain]) -> Result<HashMap<&str, Primitive>> {
    let by_name: HashMap<&str, &RawDomain> = raw.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut out = HashMap::new();
    for d in raw {
        let mut seen: Vec<&str> = vec![d.name.as_str()];
        let mut cur = d;
        let ty = loop {
            // A domain named after its own primitive (`<domain name="bit" type="bit"/>`).
            if cur.ty == cur.name {
                match Primitive::from_name(&cur.ty) {
                    Some(p) => break p,
                    None => {
                        return Err(Error::spec(
                            &cur.loc,
                            format!("domain `{}` is defined as itself", cur.name),
                        ));
                    }
                }
            }
            match by_name.get(cur.ty.as_str()) {
                Some(next) => {
                    if seen.contains(&next.name.as_str()) {
                        return Err(Error::spec(
                            &d.loc,
                            format!(
                                "domain `{}` is defined in a cycle ({})",
                                d.name,
                                seen.join(" -> ")
                            ),
                        ));
                    }
                    seen.push(next.name.as_str());
                    cur = next;
                }
                None => match Primitive::from_name(&cur.ty) {
                    Some(p) => break p,
                    None => {
                        return Err(Error::spec(
                            &cur.loc,
                            format!("domain `{}` has unknown type `{}`", cur.name, cur.ty),
                        ));
                    }
                },
            }
        };
        out.insert(d.name.as_str(), ty);
    }
    Ok(out)
}
