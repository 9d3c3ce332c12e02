/*
 * Run an exported TVM Relax library once, through the stable tvm-ffi C API.
 *
 *   vm_runner LIB.so OUT_PREFIX [INPUT.bin DTYPE D0,D1,...]...
 *
 * Loads LIB.so the way tvm.runtime.load_module does (ffi.ModuleLoadFromFile), builds
 * the Relax VM the way relax.VirtualMachine.__init__ does (vm_load_executable, then
 * vm_initialization with the CPU device and the pooled allocator), calls "main" with
 * the raw little-endian inputs, and writes output N to OUT_PREFIX.N.bin, printing one
 * line "output N DTYPE D0,D1,..." per output. Exit code 0 on success, 2 on a TVM
 * error (its kind and message on stderr), 1 on a usage or I/O error.
 *
 * Built by hwprune (hwprune/runtimes/tvm/emulate.py) with a cross compiler against the
 * aarch64 libtvm_ffi.so / libtvm_runtime.so of the TVM wheels, and run under qemu.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tvm/ffi/c_api.h>

#define ALIGN 64 /* TVM's allocation alignment: compiled kernels may assume it */

static void die_ffi(const char* what) {
  TVMFFIObjectHandle err = NULL;
  TVMFFIErrorMoveFromRaised(&err);
  if (err != NULL) {
    const TVMFFIErrorCell* cell = (const TVMFFIErrorCell*)((char*)err + sizeof(TVMFFIObject));
    fprintf(stderr, "%s: %.*s: %.*s\n", what, (int)cell->kind.size, cell->kind.data,
            (int)cell->message.size, cell->message.data);
  } else {
    fprintf(stderr, "%s failed\n", what);
  }
  exit(2);
}

static void die(const char* msg, const char* arg) {
  fprintf(stderr, "%s%s\n", msg, arg ? arg : "");
  exit(1);
}

static TVMFFIAny none_any(void) {
  TVMFFIAny a;
  memset(&a, 0, sizeof(a));
  a.type_index = kTVMFFINone;
  return a;
}

static TVMFFIAny str_any(const char* s) {
  TVMFFIAny a = none_any();
  a.type_index = kTVMFFIRawStr;
  a.v_c_str = s;
  return a;
}

static TVMFFIAny int_any(int64_t v) {
  TVMFFIAny a = none_any();
  a.type_index = kTVMFFIInt;
  a.v_int64 = v;
  return a;
}

static TVMFFIAny obj_any(TVMFFIObject* obj) {
  TVMFFIAny a = none_any();
  a.type_index = obj->type_index;
  a.v_obj = obj;
  return a;
}

static TVMFFIAny call(TVMFFIObjectHandle fn, TVMFFIAny* args, int n, const char* what) {
  TVMFFIAny out = none_any();
  if (TVMFFIFunctionCall(fn, args, n, &out) != 0) die_ffi(what);
  return out;
}

static TVMFFIObjectHandle global(const char* name) {
  TVMFFIByteArray key = {name, strlen(name)};
  TVMFFIObjectHandle fn = NULL;
  if (TVMFFIFunctionGetGlobal(&key, &fn) != 0) die_ffi(name);
  if (fn == NULL) die("global function not registered: ", name);
  return fn;
}

/* mod[name] as ffi.ModuleGetFunction(mod, name, query_imports=false) does it */
static TVMFFIObjectHandle module_function(TVMFFIAny mod, const char* name) {
  static TVMFFIObjectHandle get = NULL;
  if (get == NULL) get = global("ffi.ModuleGetFunction");
  TVMFFIAny args[3] = {mod, str_any(name), none_any()};
  args[2].type_index = kTVMFFIBool;
  args[2].v_int64 = 0;
  TVMFFIAny fn = call(get, args, 3, name);
  if (fn.type_index != kTVMFFIFunction) die("module has no function ", name);
  return fn.v_obj;
}

typedef struct {
  DLManagedTensor managed;
  int64_t shape[16];
} Input;

static void input_deleter(DLManagedTensor* self) {
  free(self->dl_tensor.data);
  free(self->manager_ctx);
}

static size_t elem_bytes(DLDataType t) { return ((size_t)t.bits * t.lanes + 7) / 8; }

static TVMFFIAny load_input(const char* path, const char* dtype, const char* dims) {
  Input* in = (Input*)calloc(1, sizeof(Input));
  DLTensor* t = &in->managed.dl_tensor;
  TVMFFIByteArray dt = {dtype, strlen(dtype)};
  if (TVMFFIDataTypeFromString(&dt, &t->dtype) != 0) die_ffi("dtype");
  size_t count = 1;
  const char* p = dims;
  while (*p) {
    char* end;
    long long d = strtoll(p, &end, 10);
    if (end == p || d < 0 || t->ndim >= 16) die("bad shape: ", dims);
    in->shape[t->ndim++] = d;
    count *= (size_t)d;
    p = (*end == ',') ? end + 1 : end;
    if (*end && *end != ',') die("bad shape: ", dims);
  }
  size_t nbytes = count * elem_bytes(t->dtype);
  t->data = aligned_alloc(ALIGN, (nbytes + ALIGN - 1) / ALIGN * ALIGN + ALIGN);
  FILE* f = fopen(path, "rb");
  if (f == NULL) die("cannot open ", path);
  if (fread(t->data, 1, nbytes, f) != nbytes) die("short input file ", path);
  fclose(f);
  t->device.device_type = kDLCPU;
  t->device.device_id = 0;
  t->shape = in->shape;
  t->strides = NULL;
  t->byte_offset = 0;
  in->managed.manager_ctx = in;
  in->managed.deleter = input_deleter;
  TVMFFIObjectHandle tensor = NULL;
  if (TVMFFITensorFromDLPack(&in->managed, ALIGN, 1, &tensor) != 0) die_ffi("input tensor");
  return obj_any((TVMFFIObject*)tensor);
}

static int write_outputs(TVMFFIAny v, const char* prefix, int index) {
  if (v.type_index == kTVMFFIArray || v.type_index == kTVMFFIList) {
    const TVMFFISeqCell* seq = (const TVMFFISeqCell*)((char*)v.v_obj + sizeof(TVMFFIObject));
    const TVMFFIAny* items = (const TVMFFIAny*)seq->data;
    for (int64_t i = 0; i < seq->size; ++i) index = write_outputs(items[i], prefix, index);
    return index;
  }
  if (v.type_index != kTVMFFITensor) {
    fprintf(stderr, "output %d has type index %d, not a tensor\n", index, v.type_index);
    exit(1);
  }
  const DLTensor* t = (const DLTensor*)((char*)v.v_obj + sizeof(TVMFFIObject));
  if (t->device.device_type != kDLCPU) die("output not on the CPU", NULL);
  size_t count = 1;
  int64_t expect = 1;
  for (int i = t->ndim - 1; i >= 0; --i) {
    if (t->strides != NULL && t->shape[i] != 1 && t->strides[i] != expect)
      die("output is not contiguous", NULL);
    expect *= t->shape[i];
  }
  for (int i = 0; i < t->ndim; ++i) count *= (size_t)t->shape[i];
  char path[4096];
  snprintf(path, sizeof(path), "%s.%d.bin", prefix, index);
  FILE* f = fopen(path, "wb");
  if (f == NULL) die("cannot write ", path);
  size_t nbytes = count * elem_bytes(t->dtype);
  if (fwrite((const char*)t->data + t->byte_offset, 1, nbytes, f) != nbytes) die("write failed ", path);
  fclose(f);
  const char* kind = t->dtype.code == kDLFloat ? "float" : t->dtype.code == kDLUInt ? "uint"
                     : t->dtype.code == kDLInt ? "int" : t->dtype.code == kDLBool ? "bool" : "?";
  printf("output %d %s%d ", index, kind, (int)t->dtype.bits);
  for (int i = 0; i < t->ndim; ++i) printf(i ? ",%lld" : "%lld", (long long)t->shape[i]);
  printf("\n");
  return index + 1;
}

int main(int argc, char** argv) {
  if (argc < 3 || (argc - 3) % 3 != 0)
    die("usage: vm_runner LIB.so OUT_PREFIX [INPUT.bin DTYPE D0,D1,...]...", NULL);
  int n_in = (argc - 3) / 3;

  /* tvm.runtime.load_module(path) */
  TVMFFIAny path = str_any(argv[1]);
  TVMFFIAny lib = call(global("ffi.ModuleLoadFromFile"), &path, 1, "load_module");
  if (lib.type_index != kTVMFFIModule) die("load_module returned no module for ", argv[1]);

  /* relax.VirtualMachine(lib, tvm.cpu()): vm_load_executable, vm_initialization */
  TVMFFIAny vm = call(module_function(lib, "vm_load_executable"), NULL, 0, "vm_load_executable");
  if (vm.type_index != kTVMFFIModule) die("vm_load_executable returned no module", NULL);
  TVMFFIAny init[3] = {int_any(kDLCPU), int_any(0), int_any(2 /* POOLED_ALLOCATOR */)};
  call(module_function(vm, "vm_initialization"), init, 3, "vm_initialization");

  TVMFFIAny* args = (TVMFFIAny*)calloc(n_in > 0 ? n_in : 1, sizeof(TVMFFIAny));
  for (int i = 0; i < n_in; ++i) args[i] = load_input(argv[3 + 3 * i], argv[4 + 3 * i], argv[5 + 3 * i]);

  TVMFFIAny out = call(module_function(vm, "main"), args, n_in, "main");
  int n_out = write_outputs(out, argv[2], 0);
  fflush(stdout);
  return n_out > 0 ? 0 : 1;
}
