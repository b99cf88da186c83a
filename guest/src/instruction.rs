//! The interpreter's vocabulary, shared by the dispatcher (`execute.rs`) and every
//! instruction module: one instruction as the host hands it over, the roots it may touch,
//! what the stage remembers between instructions, and what an instruction did. Plain data:
//! what each keyword means lives in its own module, the WIT conversions in `bindings.rs`.

use crate::files::RootId;

/// One Dockerfile instruction, variables already expanded by the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// upper case: ENV, LABEL, COPY, ...
    pub keyword: String,
    /// 1-based Dockerfile line (the host prefixes errors with it)
    pub line: u32,
    pub args: Vec<String>,
    /// `--name=value` flags in order; `--name` alone has no value
    pub flags: Vec<(String, Option<String>)>,
    /// the arguments were written as a JSON array
    pub exec_form: bool,
}

/// The trees one instruction may touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roots {
    /// the stage's root filesystem, read-write
    pub stage: RootId,
    /// the build context, read-only
    pub context: RootId,
    /// `COPY --from`: the other stage or image, read-only
    pub from: Option<RootId>,
}

/// What the interpreter remembers about the current stage between its instructions. The
/// host keeps it and hands it back with each instruction; a stage starts from the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageState {
    /// CMD was given in this stage (an ENTRYPOINT then keeps it; see `config.rs`)
    pub cmd_set: bool,
}

/// What an instruction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// the image config JSON after the instruction
    pub config: String,
    /// stage paths created or changed, relative, without a leading slash, sorted
    pub touched: Vec<String>,
    /// the stage's state after the instruction
    pub state: StageState,
}

/// Where a stage starts: the base image's config without its ONBUILD triggers, and the
/// triggers, to run first as if written right after FROM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageStart {
    pub config: String,
    pub triggers: Vec<String>,
}
