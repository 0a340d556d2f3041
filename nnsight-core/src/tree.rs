//! The module tree of one trace: one flat node table, built from the model when the trace starts.
//!
//! Every module field of an [`Inspectable`](crate::Inspectable) struct is a node; a `Vec<M>` field is
//! a list node whose children are its elements; an `Option<M>` field that is `None` is an absent
//! node. A node's children occupy consecutive ids, so a site finds its node with one addition.

use std::cell::Cell;
use std::fmt::Write as _;

use crate::inspectable::Inspectable;
use crate::value::Batching;

/// The id of a node in a trace's module tree.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    /// The root module (the model itself).
    pub const ROOT: NodeId = NodeId(0);
    /// Ids with this bit set are ghosts: envoys that stand for a module that does not exist.
    pub(crate) const GHOST: u32 = 1 << 31;

    pub(crate) fn ghost(index: usize) -> NodeId {
        NodeId(Self::GHOST | index as u32)
    }

    pub(crate) fn ghost_index(self) -> Option<usize> {
        (self.0 & Self::GHOST != 0).then_some((self.0 & !Self::GHOST) as usize)
    }

    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a node is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum NodeKind {
    /// A module (a derived struct or a burn leaf).
    Module,
    /// A `Vec<M>` of modules.
    List,
    /// An `Option<M>` that is `None`.
    Absent,
}

/// How a node is named within its parent.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Name {
    Root,
    Field(&'static str),
    Index(u32),
}

/// One node of the tree, with the visit counters of its sites.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) parent: u32,
    pub(crate) name: Name,
    pub(crate) kind: NodeKind,
    pub(crate) first_child: u32,
    pub(crate) children: u32,
    /// Where the module (or the `Vec` of a list) lives: a call site of another instance of the
    /// same type — a model called by hand inside the traced forward — is not this node's.
    pub(crate) address: usize,
    /// The module's type (a module and its first field share an address, never a type).
    pub(crate) type_name: &'static str,
    /// How the values of the module's latest call carry the batch (set at each call, from the
    /// calling `impl` block's declaration or the caller's own).
    pub(crate) batching: Cell<Batching>,
    /// The part of a several-part input (CLIP's texts, images) the module's values belong to:
    /// declared on its field (`#[inspect(part = N)]`), else its parent's; `None` for a module
    /// whose fields belong to different parts (its values combine them). 0 in a one-part model.
    pub(crate) part: Option<usize>,
    /// How many times the input site has fired in this trace.
    pub(crate) inputs_seen: Cell<u32>,
    /// How many times the output site has fired in this trace.
    pub(crate) outputs_seen: Cell<u32>,
}

/// The module tree of one trace.
#[derive(Debug)]
pub struct Tree {
    pub(crate) nodes: Vec<Node>,
}

impl Tree {
    /// Builds the tree of `model`.
    pub fn of<M: Inspectable + ?Sized>(model: &M) -> Tree {
        let mut builder = TreeBuilder { nodes: Vec::with_capacity(64), current: 0, declared: None };
        builder.nodes.push(Node::new(0, Name::Root, NodeKind::Module));
        builder.nodes[0].address = address_of(model);
        builder.nodes[0].type_name = std::any::type_name::<M>();
        model.register(&mut builder);
        Tree { nodes: builder.nodes }
    }

    /// Every module of the tree as `(address, type name, path)` (the root's path is empty): how
    /// an observer names a module a body calls (see
    /// [`Observer::call_started`](crate::observe::Observer::call_started)).
    pub fn modules(&self) -> Vec<(usize, &'static str, String)> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].kind == NodeKind::Module)
            .map(|i| {
                let path = if i == 0 { String::new() } else { self.path(NodeId(i as u32)) };
                (self.nodes[i].address, self.nodes[i].type_name, path)
            })
            .collect()
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is empty (never: the root is always there).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    /// The child `slot` of `parent`; a ghost or absent parent is its own child.
    pub(crate) fn child(&self, parent: NodeId, slot: u32) -> NodeId {
        if parent.ghost_index().is_some() {
            return parent;
        }
        let node = self.node(parent);
        if slot < node.children { NodeId(node.first_child + slot) } else { parent }
    }

    /// The module at a dotted path (`blocks.2.attn`; `model` or the empty path for the root), if
    /// there is one.
    pub fn find(&self, path: &str) -> Option<NodeId> {
        self.lookup(path).ok()
    }

    /// The module at a dotted path, found component by component; else the deepest node reached
    /// and the component not found under it.
    pub(crate) fn lookup<'p>(&self, path: &'p str) -> Result<NodeId, (NodeId, &'p str)> {
        let mut at = NodeId::ROOT;
        if path.is_empty() || path == "model" {
            return Ok(at);
        }
        for component in path.split('.') {
            let node = self.node(at);
            let children = (node.first_child..node.first_child + node.children).map(NodeId);
            let found = children.into_iter().find(|&child| match self.node(child).name {
                Name::Field(name) => name == component,
                Name::Index(index) => component.parse() == Ok(index),
                Name::Root => false,
            });
            match found {
                Some(child) if self.node(child).kind != NodeKind::Absent => at = child,
                _ => return Err((at, component)),
            }
        }
        if self.node(at).kind == NodeKind::Module { Ok(at) } else { Err((at, "")) }
    }

    /// The names of a node's children (fields, or indices of a list), for messages.
    pub(crate) fn child_names(&self, id: NodeId) -> Vec<String> {
        let node = self.node(id);
        (node.first_child..node.first_child + node.children)
            .map(|c| match self.node(NodeId(c)).name {
                Name::Field(name) => name.to_owned(),
                Name::Index(index) => index.to_string(),
                Name::Root => "model".to_owned(),
            })
            .collect()
    }

    /// The dotted path of a node (`blocks.2.attn`); the root is `model`.
    pub fn path(&self, id: NodeId) -> String {
        let mut chain = Vec::new();
        let mut at = id.index();
        while at != 0 {
            chain.push(at);
            at = self.nodes[at].parent as usize;
        }
        if chain.is_empty() {
            return "model".to_owned();
        }
        let mut out = String::new();
        for (i, &n) in chain.iter().rev().enumerate() {
            if i > 0 {
                out.push('.');
            }
            match self.nodes[n].name {
                Name::Root => out.push_str("model"),
                Name::Field(f) => out.push_str(f),
                Name::Index(k) => {
                    let _ = write!(out, "{k}");
                }
            }
        }
        out
    }
}

impl Node {
    fn new(parent: u32, name: Name, kind: NodeKind) -> Node {
        Node {
            parent,
            name,
            kind,
            first_child: 0,
            children: 0,
            address: 0,
            type_name: "",
            batching: Cell::new(Batching::Dim(0)),
            part: Some(0),
            inputs_seen: Cell::new(0),
            outputs_seen: Cell::new(0),
        }
    }
}

/// The address of a module, as call sites compare it.
pub(crate) fn address_of<M: ?Sized>(module: &M) -> usize {
    (module as *const M).cast::<()>() as usize
}

/// Registers a model's modules as nodes; generated `Inspectable::register` code drives it.
#[derive(Debug)]
pub struct TreeBuilder {
    nodes: Vec<Node>,
    current: u32,
    /// A part declared for a reserved node, waiting for the node to be filled.
    declared: Option<(u32, usize)>,
}

impl TreeBuilder {
    /// Reserves `count` consecutive child nodes of the current node and returns the first id.
    pub fn reserve(&mut self, count: u32) -> u32 {
        let first = self.nodes.len() as u32;
        let parent = self.current;
        let node = &mut self.nodes[parent as usize];
        node.first_child = first;
        node.children = count;
        for _ in 0..count {
            self.nodes.push(Node::new(parent, Name::Root, NodeKind::Absent));
        }
        first
    }

    /// Fills reserved node `id` with the module field `name`, and registers its children.
    pub fn module<M: Inspectable + ?Sized>(&mut self, id: u32, name: &'static str, module: &M) {
        self.fill(id, Name::Field(name), NodeKind::Module);
        self.nodes[id as usize].address = address_of(module);
        self.nodes[id as usize].type_name = std::any::type_name::<M>();
        self.descend(id, module);
    }

    /// Fills reserved node `id` with the optional module field `name` (absent when `None`).
    pub fn optional<M: Inspectable>(&mut self, id: u32, name: &'static str, module: Option<&M>) {
        match module {
            Some(module) => self.module(id, name, module),
            None => self.fill(id, Name::Field(name), NodeKind::Absent),
        }
    }

    /// Fills reserved node `id` with the list field `name`, one child per element.
    // The `Vec` itself, not a slice: its address tells this list from another instance's.
    #[allow(clippy::ptr_arg)]
    pub fn list<M: Inspectable>(&mut self, id: u32, name: &'static str, modules: &Vec<M>) {
        self.fill(id, Name::Field(name), NodeKind::List);
        self.nodes[id as usize].address = address_of(modules);
        let saved = std::mem::replace(&mut self.current, id);
        let first = self.reserve(modules.len() as u32);
        for (i, module) in modules.iter().enumerate() {
            let child = first + i as u32;
            self.fill(child, Name::Index(i as u32), NodeKind::Module);
            self.nodes[child as usize].address = address_of(module);
            self.nodes[child as usize].type_name = std::any::type_name::<M>();
            self.descend(child, module);
        }
        self.current = saved;
    }

    /// Declares that reserved node `id` (filled next) and everything under it belong to `part` of
    /// a several-part input (`#[inspect(part = N)]` on the field).
    pub fn part(&mut self, id: u32, part: usize) {
        self.declared = Some((id, part));
    }

    /// Marks the node being registered as combining parts (its fields declare different ones):
    /// called after its fields are registered, so undeclared fields keep its own part.
    pub fn combine_parts(&mut self) {
        self.nodes[self.current as usize].part = None;
    }

    fn fill(&mut self, id: u32, name: Name, kind: NodeKind) {
        let inherited = self.nodes[self.nodes[id as usize].parent as usize].part;
        let part = match self.declared.take() {
            Some((declared, part)) if declared == id => Some(part),
            other => {
                self.declared = other;
                inherited
            }
        };
        let node = &mut self.nodes[id as usize];
        node.name = name;
        node.kind = kind;
        node.part = part;
    }

    fn descend<M: Inspectable + ?Sized>(&mut self, id: u32, module: &M) {
        let saved = std::mem::replace(&mut self.current, id);
        module.register(self);
        self.current = saved;
    }
}
