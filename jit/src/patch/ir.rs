//! The Patch thunk as Cranelift IR: compares against table words.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::immediates::Imm64;
use cranelift_codegen::ir::{
    AbiParam, ExtFuncData, ExternalName, Function, GlobalValueData, InstBuilder, MemFlagsData,
    UserExternalName, UserFuncName, types,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

use crate::thunk::ir::{target_signature, thunk_signature};
use crate::types::ThunkSig;

/// User-name namespace of the slots' direct calls (index = slot), as in the
/// JIT thunk.
pub(crate) const SLOT_NAMESPACE: u32 = 0;
/// User-name namespace of the table's address.
pub(crate) const TABLE_NAMESPACE: u32 = 3;
/// User-name namespace of the miss exit, where the miss path calls it (see
/// [`super::MissExit::Call`]).
pub(crate) const MISS_EXIT_NAMESPACE: u32 = 6;

/// Fills `func` with the Patch thunk for `sig` and `slots` slots. With
/// `miss_exit_call`, the miss path first calls the miss exit
/// (`preserve_all`, with the target's arguments where the indirect call
/// after it wants them, then the target), as the JIT thunk calls its miss
/// hook where its miss cannot tail-jump (`crate::thunk::ir`).
pub(crate) fn build_patch_thunk(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    sig: &ThunkSig,
    frontend: TargetFrontendConfig,
    slots: usize,
    hardened: bool,
    miss_exit_call: bool,
) {
    let cc = frontend.default_call_conv;
    func.signature = thunk_signature(sig, cc);
    func.name = UserFuncName::user(4, slots as u32);
    let mut b = FunctionBuilder::new(func, fctx);
    let target_sig = b.import_signature(target_signature(sig, cc));

    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params = b.block_params(entry).to_vec();
    let (target, args) = (params[0], &params[1..]);

    if slots > 0 {
        let table_name = b
            .func
            .declare_imported_user_function(UserExternalName::new(TABLE_NAMESPACE, 0));
        // Colocated: a PC-relative address (`lea` / `adrp`+`add`), relocated
        // when the thunk is placed.
        let table_gv = b.create_global_value(GlobalValueData::Symbol {
            name: ExternalName::user(table_name),
            offset: Imm64::new(0),
            colocated: true,
            tls: false,
        });
        let table = b.ins().symbol_value(types::I64, table_gv);
        // Aligned, cannot trap (the table is ours), and *not* `readonly`:
        // the word changes under the thunk's feet, so Cranelift must load it
        // where the compare is.
        let flags = MemFlagsData::trusted();
        for k in 0..slots {
            let hit = b.create_block();
            let next = b.create_block();
            let promoted = b.ins().load(types::I64, flags, table, (8 * k) as i32);
            let differs = b.ins().icmp(IntCC::NotEqual, target, promoted);
            b.ins().brif(differs, next, &[], hit, &[]);

            b.switch_to_block(hit);
            let name = b
                .func
                .declare_imported_user_function(UserExternalName::new(SLOT_NAMESPACE, k as u32));
            let callee = b.import_function(ExtFuncData {
                name: ExternalName::user(name),
                signature: target_sig,
                colocated: true,
                patchable: false,
            });
            let call = b.ins().call(callee, args);
            let results = b.inst_results(call).to_vec();
            b.ins().return_(&results);
            b.switch_to_block(next);
        }
    }

    if miss_exit_call {
        let mut exit_sig = target_signature(sig, CallConv::PreserveAll);
        exit_sig.returns.clear(); // `preserve_all` returns nothing
        exit_sig.params.push(AbiParam::new(types::I64));
        let exit_sig = b.import_signature(exit_sig);
        let name = b
            .func
            .declare_imported_user_function(UserExternalName::new(MISS_EXIT_NAMESPACE, 0));
        let exit = b.import_function(ExtFuncData {
            name: ExternalName::user(name),
            signature: exit_sig,
            colocated: true,
            patchable: false,
        });
        let mut exit_args = args.to_vec();
        exit_args.push(target);
        b.ins().call(exit, &exit_args);
    }
    let call = crate::hardened::miss_call(&mut b, target_sig, target, args, hardened);
    let results = b.inst_results(call).to_vec();
    b.ins().return_(&results);
    b.seal_all_blocks();
    b.finalize(frontend);
}
