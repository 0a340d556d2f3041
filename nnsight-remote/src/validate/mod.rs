//! Validation of a program against a model's [`Manifest`], before anything is sent or run: every
//! path, the order of the site accesses of each invoke, the occurrences reached, the shape and
//! element type of every write and of every operation's operands (dimensions unknown before the
//! host tokenizes a text prompt are left unchecked), slice bounds, the calls and parameters the
//! host offers, and the host's limits. Each problem is a [`Diagnostic`] with a stable code, the
//! node and its source location; a valid program gets a [`Plan`] with its cost.

mod shape;

use std::collections::BTreeMap;

use crate::check::check;
use crate::diagnostic::{Code, Diagnostic, NodePath};
use crate::ir::{DType, Input, Node, Op, Program, Ref, Site, SiteKind, Trace};
use crate::manifest::{Dim, Manifest};
use shape::{Fault, Size, Ty};

/// What a host accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Nodes in the whole program (edit bodies included).
    pub max_nodes: usize,
    /// Traces in the program.
    pub max_traces: usize,
    /// Invokes in one trace.
    pub max_invokes: usize,
    /// Tokens one generation may add.
    pub max_new_tokens: u32,
    /// Bytes of all saved values together (at most: an unknown length counts as the context).
    pub max_saved_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_nodes: 100_000,
            max_traces: 64,
            max_invokes: 1024,
            max_new_tokens: 1024,
            max_saved_bytes: 1 << 30,
        }
    }
}

/// What running a valid program costs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Its nodes (edit bodies included).
    pub nodes: usize,
    /// Forward passes, all traces together (a generation runs one per token).
    pub forward_passes: u64,
    /// Token positions the forward passes process (an unknown prompt length counts as the
    /// context): the compute estimate.
    pub positions: u64,
    /// The most bytes its saves send back.
    pub saved_bytes: u64,
}

/// Validates `program` against `manifest` and `limits`; `tensors` gives the shape and element
/// type of each attached tensor.
///
/// # Errors
/// Every problem found, each a [`Diagnostic`] (structural ones first: see [`check`]).
pub fn validate(
    manifest: &Manifest,
    program: &Program,
    tensors: &BTreeMap<String, (Vec<usize>, DType)>,
    limits: &Limits,
) -> Result<Plan, Vec<Diagnostic>> {
    let structural = check(program);
    if !structural.is_empty() {
        return Err(structural);
    }
    let mut v = Validator { manifest, tensors, limits, out: Vec::new(), saved: BTreeMap::new() };
    let mut plan = Plan { nodes: 0, forward_passes: 0, positions: 0, saved_bytes: 0 };
    if program.traces.len() > limits.max_traces {
        v.out.push(Diagnostic::program(
            Code::LimitExceeded,
            format!("{} traces; this host takes at most {}", program.traces.len(), limits.max_traces),
        ));
    }
    for (t, trace) in program.traces.iter().enumerate() {
        v.trace(t, trace, &mut plan);
    }
    if plan.nodes > limits.max_nodes {
        v.out.push(Diagnostic::program(
            Code::LimitExceeded,
            format!("{} nodes; this host takes at most {}", plan.nodes, limits.max_nodes),
        ));
    }
    if plan.saved_bytes > limits.max_saved_bytes {
        v.out.push(Diagnostic::program(
            Code::LimitExceeded,
            format!(
                "the saves may send back {} bytes; this host sends at most {}",
                plan.saved_bytes, limits.max_saved_bytes
            ),
        ));
    }
    if v.out.is_empty() { Ok(plan) } else { Err(v.out) }
}

/// The shape of the values an invoke sees in one trace.
#[derive(Clone, Copy)]
struct View {
    /// The invoke's rows.
    rows: usize,
    /// The sequence length, if known (and fixed: not while generating).
    seq: Option<usize>,
    /// Forward passes the trace runs.
    passes: u32,
    /// Whether the trace generates: its passes after the first see one new position.
    generating: bool,
    /// The most a dimension that depends on the input can be (the longest prompt and the
    /// generated tokens; the context when a prompt's length is not known).
    bound: usize,
}

struct Validator<'a> {
    manifest: &'a Manifest,
    tensors: &'a BTreeMap<String, (Vec<usize>, DType)>,
    limits: &'a Limits,
    out: Vec<Diagnostic>,
    /// The types of the saves of earlier traces.
    saved: BTreeMap<String, Ty>,
}

impl Validator<'_> {
    fn report(&mut self, code: Code, at: NodePath, node: &Node, message: String) {
        self.out.push(Diagnostic { code, node: Some(at), at: node.at.clone(), message });
    }

    fn trace(&mut self, t: usize, trace: &Trace, plan: &mut Plan) {
        let program = |code, message: String| Diagnostic::program(code, format!("trace {t}: {message}"));
        if trace.invokes.len() > self.limits.max_invokes {
            let message = format!(
                "{} invokes; this host takes at most {}",
                trace.invokes.len(),
                self.limits.max_invokes
            );
            self.out.push(program(Code::LimitExceeded, message));
        }
        // The batch: one row per invoke with a prompt; the longest prompt, when every one is known.
        let mut batch = 0;
        let mut longest = Some(0usize);
        for (i, invoke) in trace.invokes.iter().enumerate() {
            match &invoke.input {
                None => {}
                Some(Input::Tokens(tokens)) => {
                    batch += 1;
                    longest = longest.map(|l| l.max(tokens.len()));
                }
                Some(Input::Text(_)) => {
                    batch += 1;
                    longest = None;
                }
                Some(Input::Tensor(name)) => self.out.push(program(
                    Code::BadInput,
                    format!("invoke {i} takes the tensor `{name}`; a language model takes prompts"),
                )),
            }
        }
        let mut passes = 1;
        if let Some(generate) = &trace.generate {
            if !self.manifest.generates {
                self.out.push(program(Code::BadInput, "generates, on a model that does not".into()));
            }
            if generate.max_new_tokens > self.limits.max_new_tokens {
                let message = format!(
                    "generates {} tokens; this host generates at most {}",
                    generate.max_new_tokens, self.limits.max_new_tokens
                );
                self.out.push(program(Code::LimitExceeded, message));
            }
            passes = generate.max_new_tokens.max(1);
        }
        let context = self.manifest.max_positions;
        if let Some(l) = longest {
            let total = l + trace.generate.as_ref().map_or(0, |g| g.max_new_tokens as usize);
            if total > context {
                self.out.push(program(
                    Code::BadInput,
                    format!("{total} positions exceed the model's context of {context}"),
                ));
            }
        }
        plan.forward_passes += u64::from(passes);
        // The prompt once, then one position per row and generated token.
        let rows = batch as u64;
        plan.positions += rows * longest.unwrap_or(context) as u64 + rows * u64::from(passes - 1);
        let generating = trace.generate.is_some();
        let seq = if generating { None } else { longest };
        let new_tokens = trace.generate.as_ref().map_or(0, |g| g.max_new_tokens as usize);
        let bound = longest.map_or(context, |l| (l + new_tokens).min(context.max(l)));
        let mut types: Vec<BTreeMap<Ref, Ty>> = vec![BTreeMap::new(); trace.invokes.len()];
        for (i, invoke) in trace.invokes.iter().enumerate() {
            let rows = if invoke.input.is_some() { 1 } else { batch.max(1) };
            let view = View { rows, seq, passes, generating, bound };
            let mut order: Option<((u32, usize), Ref)> = None;
            let mut n: Ref = 0;
            for node in &invoke.nodes {
                let at = NodePath { trace: t as u32, invoke: i as u32, node: n };
                plan.nodes += 1;
                let ty = self.node(at, node, view, &mut types, &mut order, plan);
                if let Some(ty) = ty {
                    types[i].insert(n, ty);
                }
                if let Op::Edit { body, .. } = &node.op {
                    plan.nodes += body.len();
                    self.edit(at, node, view, &mut types, plan);
                    n += body.len() as Ref;
                }
                n += 1;
            }
        }
    }

    /// The site's type as an invoke sees it, and its position in the forward order; `None`
    /// after reporting what is wrong.
    fn site(
        &mut self,
        at: NodePath,
        node: &Node,
        site: &Site,
        view: View,
        occurrence: bool,
    ) -> Option<(Ty, (u32, usize))> {
        if !self.manifest.has_module(&site.path) {
            let message = format!("the model has no module `{}`", site.path);
            self.report(Code::UnknownSite, at, node, message);
            return None;
        }
        let entries: Vec<_> =
            self.manifest.site_entries(&site.path, site.kind).map(|(i, e)| (i, e.clone())).collect();
        if entries.is_empty() {
            let side = match site.kind {
                SiteKind::Output => "an output tensor".to_owned(),
                SiteKind::Input(k) => format!("an argument {k} that is a tensor"),
            };
            self.report(Code::UnknownSite, at, node, format!("`{}` has no {side}", site.path));
            return None;
        }
        let per_pass = entries.len() as u32;
        let occ = if occurrence { site.occurrence } else { 0 };
        let pass = occ / per_pass;
        if pass >= view.passes {
            let message = format!(
                "`{}` occurrence {occ}: the forward pass reaches it {} time(s) ({per_pass} per pass, {} pass(es))",
                site.path,
                per_pass * view.passes,
                view.passes
            );
            self.report(Code::OccurrenceOutOfRange, at, node, message);
            return None;
        }
        let (index, entry) = &entries[(occ % per_pass) as usize];
        let shape = entry
            .shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Size::Known(*n),
                Dim::Batch => Size::Known(view.rows),
                // A generation's later passes see the one new position.
                Dim::Seq if view.generating && pass > 0 => Size::Known(1),
                Dim::Seq => view.seq.map_or(Size::Unknown, Size::Known),
                Dim::Dynamic => Size::Unknown,
            })
            .collect();
        Some((Ty { shape, dtype: entry.dtype }, (pass, *index)))
    }

    /// Checks that a site access comes after the invoke's previous one.
    fn ordered(
        &mut self,
        at: NodePath,
        node: &Node,
        key: (u32, usize),
        order: &mut Option<((u32, usize), Ref)>,
        what: &Site,
    ) {
        match *order {
            Some((previous, from)) if key < previous => {
                let message = format!(
                    "`{}` (occurrence {}) comes before the site of node {from} in the forward pass: access \
                     sites in execution order",
                    what.path, what.occurrence
                );
                self.report(Code::OutOfOrder, at, node, message);
            }
            _ => *order = Some((key, at.node)),
        }
    }

    fn fits(&mut self, at: NodePath, node: &Node, what: &str, value: &Ty, slot: &Ty) {
        if value.dtype != slot.dtype {
            let message = format!("{what}: a {} for a {}", value.describe(), slot.describe());
            return self.report(Code::TypeMismatch, at, node, message);
        }
        let same = value.shape.len() == slot.shape.len()
            && value
                .shape
                .iter()
                .zip(&slot.shape)
                .all(|(a, b)| !matches!((a, b), (Size::Known(x), Size::Known(y)) if x != y));
        if !same {
            let message = format!("{what}: a {} for a {}", value.describe(), slot.describe());
            self.report(Code::ShapeMismatch, at, node, message);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn node(
        &mut self,
        at: NodePath,
        node: &Node,
        view: View,
        types: &mut [BTreeMap<Ref, Ty>],
        order: &mut Option<((u32, usize), Ref)>,
        plan: &mut Plan,
    ) -> Option<Ty> {
        let i = at.invoke as usize;
        let get = |r: Ref| types[i].get(&r).cloned();
        match &node.op {
            Op::Read { site } => {
                let (ty, key) = self.site(at, node, site, view, true)?;
                self.ordered(at, node, key, order, site);
                Some(ty)
            }
            Op::Write { site, value } => {
                let (slot, key) = self.site(at, node, site, view, true)?;
                self.ordered(at, node, key, order, site);
                if let Some(value) = get(*value) {
                    self.fits(at, node, &format!("writing `{}`", site.path), &value, &slot);
                }
                None
            }
            Op::Skip { module, occurrence, value } => {
                let site = Site { path: module.clone(), kind: SiteKind::Output, occurrence: *occurrence };
                let (slot, key) = self.site(at, node, &site, view, true)?;
                self.ordered(at, node, key, order, &site);
                if let Some(value) = get(*value) {
                    self.fits(at, node, &format!("skipping `{module}`"), &value, &slot);
                }
                None
            }
            Op::Call { module, args } => {
                if !self.manifest.callable.iter().any(|c| c == module) {
                    let message = format!(
                        "`{module}` is not callable here (callable: {})",
                        self.manifest.callable.join(", ")
                    );
                    self.report(Code::NotCallable, at, node, message);
                    return None;
                }
                let _ = args;
                let entry =
                    self.manifest.site_entries(module, SiteKind::Output).next().map(|(_, e)| e.clone())?;
                let shape = entry
                    .shape
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => Size::Known(*n),
                        _ => Size::Unknown,
                    })
                    .collect();
                Some(Ty { shape, dtype: entry.dtype })
            }
            Op::Param { path } => match self.manifest.param(path) {
                Some(p) => Some(Ty::known(&p.shape, p.dtype)),
                None => {
                    self.report(
                        Code::UnknownParam,
                        at,
                        node,
                        format!("the model offers no parameter `{path}`"),
                    );
                    None
                }
            },
            Op::Tensor { name } => match self.tensors.get(name) {
                Some((shape, dtype)) => Some(Ty::known(shape, *dtype)),
                None => {
                    self.report(Code::BadTensors, at, node, format!("no tensor `{name}` is attached"));
                    None
                }
            },
            Op::Saved { name } => self.saved.get(name).cloned(),
            Op::Shared { invoke, node: r } => types.get(*invoke as usize).and_then(|m| m.get(r).cloned()),
            Op::Save { name, value, cast } => {
                if let Some(mut ty) = get(*value) {
                    if let Some(c) = cast {
                        ty.dtype = *c;
                    }
                    plan.saved_bytes += ty.elements(view.bound).saturating_mul(ty.dtype.size() as u64);
                    self.saved.insert(name.clone(), ty);
                }
                None
            }
            op => match shape::infer(op, &get, self.int()) {
                None => None,
                Some(Ok(ty)) => Some(ty),
                Some(Err(fault)) => {
                    let (code, message) = match fault {
                        Fault::Shape(m) => (Code::BadShape, m),
                        Fault::Type(m) => (Code::TypeMismatch, m),
                        Fault::Bounds(m) => (Code::OutOfBounds, m),
                    };
                    self.report(code, at, node, message);
                    None
                }
            },
        }
    }

    /// The host's integer type: the token ids'.
    fn int(&self) -> DType {
        self.manifest.site_entries("", SiteKind::Input(0)).next().map_or(DType::I64, |(_, e)| e.dtype)
    }

    /// The body of the standing edit `edit` (at `at`): its argument is the site's value, its
    /// last value must fit the site.
    fn edit(
        &mut self,
        at: NodePath,
        edit: &Node,
        view: View,
        types: &mut [BTreeMap<Ref, Ty>],
        plan: &mut Plan,
    ) {
        let Op::Edit { site, body, .. } = &edit.op else { return };
        let Some((slot, _)) = self.site(at, edit, site, view, false) else { return };
        let i = at.invoke as usize;
        let mut last = None;
        let mut order = None;
        for (k, node) in body.iter().enumerate() {
            let r = at.node + 1 + k as Ref;
            let here = NodePath { node: r, ..at };
            let ty = match node.op {
                Op::Arg => Some(slot.clone()),
                _ => self.node(here, node, view, types, &mut order, plan),
            };
            if let Some(ty) = &ty {
                types[i].insert(r, ty.clone());
            }
            last = ty;
        }
        if let (Some(value), Some(node)) = (last, body.last()) {
            let here = NodePath { node: at.node + body.len() as Ref, ..at };
            self.fits(here, node, &format!("the edit of `{}`", site.path), &value, &slot);
        }
    }
}
