//! The structural rules of a program, whatever model it runs on: every reference names a value
//! before it and in scope, edit bodies are well formed, shared and saved values exist, save names
//! are unique, operations' own arguments are consistent, and the version stamp is readable and
//! high enough. (Whether paths, shapes and types fit a model is the manifest's validation.)

use std::collections::HashSet;

use crate::diagnostic::{Code, Diagnostic, NodePath};
use crate::ir::{Node, Op, Program, Ref, Steps};
use crate::version::Version;

/// Every rule `program` breaks, in program order; empty when it follows them all.
pub fn check(program: &Program) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    if !Version::CURRENT.reads(program.ir) {
        diagnostics.push(Diagnostic::program(
            Code::UnsupportedVersion,
            format!(
                "the program is IR {}; this build reads IR {} up to {}",
                program.ir,
                Version::CURRENT.major,
                Version::CURRENT
            ),
        ));
        return diagnostics;
    }
    let required = program.required_version();
    if program.ir < required {
        diagnostics.push(Diagnostic::program(
            Code::VersionTooLow,
            format!("the program is stamped IR {} but uses operations of IR {required}", program.ir),
        ));
    }
    if program.traces.is_empty() {
        diagnostics.push(Diagnostic::program(Code::BadArgument, "the program has no trace"));
    }
    let mut saved_before: HashSet<&str> = HashSet::new();
    let mut saved_anywhere: HashSet<&str> = HashSet::new();
    for (t, trace) in program.traces.iter().enumerate() {
        if trace.invokes.is_empty() {
            let message = format!("trace {t} has no invoke");
            diagnostics.push(Diagnostic::program(Code::BadArgument, message));
        }
        let mut invokes: Vec<Vec<Slot>> = Vec::new();
        let mut saved_here = Vec::new();
        for (i, invoke) in trace.invokes.iter().enumerate() {
            let mut walker = Walker {
                diagnostics: &mut diagnostics,
                trace: t as u32,
                invoke: i as u32,
                slots: Vec::new(),
                earlier_invokes: &invokes,
                saved_before: &saved_before,
                saved_anywhere: &mut saved_anywhere,
                saved_here: &mut saved_here,
            };
            walker.walk(&invoke.nodes, false);
            let slots = walker.slots;
            invokes.push(slots);
        }
        saved_before.extend(saved_here);
    }
    diagnostics
}

/// What a node's position holds, as seen from the node being checked.
#[derive(Clone, Copy, PartialEq)]
enum Slot {
    Value,
    NoValue,
    /// A node of an edit body that has closed.
    OutOfScope,
}

struct Walker<'a, 'p> {
    diagnostics: &'a mut Vec<Diagnostic>,
    trace: u32,
    invoke: u32,
    slots: Vec<Slot>,
    earlier_invokes: &'a [Vec<Slot>],
    saved_before: &'a HashSet<&'p str>,
    saved_anywhere: &'a mut HashSet<&'p str>,
    saved_here: &'a mut Vec<&'p str>,
}

impl<'p> Walker<'_, 'p> {
    fn report(&mut self, node: &Node, id: Ref, code: Code, message: String) {
        let node_path = NodePath { trace: self.trace, invoke: self.invoke, node: id };
        self.diagnostics.push(Diagnostic { code, node: Some(node_path), at: node.at.clone(), message });
    }

    fn walk(&mut self, nodes: &'p [Node], in_body: bool) {
        for (position, node) in nodes.iter().enumerate() {
            let id = self.slots.len() as Ref;
            for input in node.op.inputs() {
                match self.slots.get(input as usize) {
                    Some(Slot::Value) => {}
                    Some(Slot::NoValue) => {
                        let message = format!("`{}` uses node {input}, which has no value", node.op.name());
                        self.report(node, id, Code::NoValue, message);
                    }
                    Some(Slot::OutOfScope) => {
                        let message = format!(
                            "`{}` uses node {input}, a node of an edit's body that is not in scope here",
                            node.op.name()
                        );
                        self.report(node, id, Code::DanglingRef, message);
                    }
                    None => {
                        let message = format!(
                            "`{}` uses node {input}, which is not before it (node {id})",
                            node.op.name()
                        );
                        self.report(node, id, Code::DanglingRef, message);
                    }
                }
            }
            self.rules(node, id, position, in_body);
            self.slots.push(if node.op.has_value() { Slot::Value } else { Slot::NoValue });
            if let Op::Edit { body, .. } = &node.op {
                let start = self.slots.len();
                self.walk(body, true);
                match body.last() {
                    Some(last) if last.op.has_value() => {}
                    _ => self.report(
                        node,
                        id,
                        Code::BadEditBody,
                        "an edit's body must end with a value".into(),
                    ),
                }
                for slot in &mut self.slots[start..] {
                    *slot = Slot::OutOfScope;
                }
            }
        }
    }

    /// The rules of one node's own operation.
    fn rules(&mut self, node: &'p Node, id: Ref, position: usize, in_body: bool) {
        let bad =
            |walker: &mut Self, message: &str| walker.report(node, id, Code::BadArgument, message.into());
        match &node.op {
            Op::Arg if !(in_body && position == 0) => {
                let message = "`arg` is only the first node of an edit's body".into();
                self.report(node, id, Code::ArgOutsideEdit, message);
            }
            Op::Read { .. }
            | Op::Write { .. }
            | Op::Edit { .. }
            | Op::Skip { .. }
            | Op::Stop
            | Op::Save { .. }
            | Op::Log { .. }
                if in_body =>
            {
                let message = format!(
                    "an edit's body computes the new value only; `{}` cannot stand in it (put it before the edit)",
                    node.op.name()
                );
                self.report(node, id, Code::BadEditBody, message);
            }
            Op::Edit { steps, body, .. } => {
                if !matches!(body.first(), Some(first) if first.op == Op::Arg) {
                    self.report(node, id, Code::BadEditBody, "an edit's body starts with `arg`".into());
                }
                match steps {
                    Steps::List(list) if list.is_empty() || list.windows(2).any(|w| w[0] >= w[1]) => {
                        bad(self, "an edit's step list is non-empty and strictly ascending")
                    }
                    Steps::Range { start, end: Some(end) } if start >= end => {
                        bad(self, "an edit's step range is empty")
                    }
                    _ => {}
                }
            }
            Op::Shared { invoke, node: shared } => {
                let ok = self
                    .earlier_invokes
                    .get(*invoke as usize)
                    .and_then(|slots| slots.get(*shared as usize))
                    .is_some_and(|slot| *slot == Slot::Value);
                if !ok {
                    let message = format!(
                        "`shared` takes node {shared} of invoke {invoke}: an earlier invoke of this trace, \
                         and a node of it with a value"
                    );
                    self.report(node, id, Code::BadShared, message);
                }
            }
            Op::Saved { name } if !self.saved_before.contains(name.as_str()) => {
                let message = format!("no earlier trace of the session saves `{name}`");
                self.report(node, id, Code::UnknownSaved, message);
            }
            Op::Save { name, .. } => {
                if !self.saved_anywhere.insert(name) {
                    self.report(node, id, Code::DuplicateSave, format!("`{name}` is saved twice"));
                }
                self.saved_here.push(name);
            }
            Op::Reduce { fun, dim: None, .. } if fun.needs_dim() => {
                bad(self, "an index reduction (argmax, argmin) needs a dimension")
            }
            Op::Cat { xs, .. } | Op::Stack { xs, .. } if xs.is_empty() => {
                bad(self, "joins at least one tensor")
            }
            Op::Call { args, .. } if args.is_empty() => bad(self, "a call takes at least one argument"),
            Op::TopK { k: 0, .. } => bad(self, "top-k takes k ≥ 1"),
            Op::Permute { dims, .. } => {
                let mut seen = vec![false; dims.len()];
                let permutation = dims.iter().all(|&d| {
                    let fresh = seen.get(d as usize).is_some_and(|s| !s);
                    if fresh {
                        seen[d as usize] = true;
                    }
                    fresh
                });
                if !permutation {
                    bad(self, "permute's dims are a permutation of 0..rank")
                }
            }
            Op::Reshape { shape, .. }
                if shape.iter().any(|&d| d < -1) || shape.iter().filter(|&&d| d == -1).count() > 1 =>
            {
                bad(self, "a reshape's entries are sizes, 0 (keep) or one -1 (inferred)")
            }
            _ => {}
        }
    }
}
