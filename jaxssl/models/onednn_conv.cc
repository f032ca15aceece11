// oneDNN's convolutions as XLA FFI handlers for model.conv="onednn" (jaxssl/models/onednn.py
// builds this file on first use, registers the handlers and gives them their gradients,
// batching and partitioning rules).
//
// Layouts are XLA's as the models use them: the input and output channels-last (NWC, NHWC,
// NDHWC), the kernel spatial-first (WIO, HWIO, DHWIO), float32 or bfloat16. Three handlers,
// one per direction of the same convolution:
//   forward:          x, w  -> y
//   backward_data:    dy, w -> dx   (dx's shape from the result buffer)
//   backward_weights: x, dy -> dw   (dw's shape from the result buffer)
// Each takes the strides, the padding before and after each spatial axis and its OpenMP
// threads. Primitives are cached per shape and thread count; the kernel is reordered to (the
// weight gradient from) oneDNN's preferred layout on every call. JaxsslNativeBfloat16 says
// whether this CPU computes bfloat16 in hardware (else oneDNN would emulate it in software),
// JaxsslNoAvx512 whether it lacks AVX-512.
#include <omp.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

enum Direction : int64_t { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

// The shapes of one convolution in oneDNN's logical order: activations (N, C, spatial...),
// kernel (O, I, spatial...), each with the tag of XLA's physical layout.
struct Geometry {
  memory::dims src, weights, dst, strides, pad_lo, pad_hi;
  memory::format_tag data_tag, weights_tag;
  memory::data_type type;
};

Geometry Describe(ffi::Span<const int64_t> x, ffi::Span<const int64_t> w,
                  ffi::Span<const int64_t> y, ffi::Span<const int64_t> strides,
                  ffi::Span<const int64_t> pad_lo, ffi::Span<const int64_t> pad_hi,
                  memory::data_type type) {
  const size_t spatial = x.size() - 2;
  Geometry g;
  g.type = type;
  g.src = {x[0], x[x.size() - 1]};
  g.dst = {y[0], y[y.size() - 1]};
  g.weights = {w[w.size() - 1], w[w.size() - 2]};
  for (size_t i = 0; i < spatial; ++i) {
    g.src.push_back(x[1 + i]);
    g.dst.push_back(y[1 + i]);
    g.weights.push_back(w[i]);
    g.strides.push_back(strides[i]);
    g.pad_lo.push_back(pad_lo[i]);
    g.pad_hi.push_back(pad_hi[i]);
  }
  using tag = memory::format_tag;
  g.data_tag = spatial == 1 ? tag::nwc : spatial == 2 ? tag::nhwc : tag::ndhwc;
  g.weights_tag = spatial == 1 ? tag::wio : spatial == 2 ? tag::hwio : tag::dhwio;
  return g;
}

// One direction's primitive for one geometry, and the kernel layout it wants.
struct Primitive {
  dnnl::primitive primitive;
  memory::desc scratchpad, weights, user_weights;
};

// Two of oneDNN 3.2's first choices for a strided 1x1 convolution (ResNet's shortcuts) are
// passed over; each choice depends only on the geometry and the CPU, so a run repeats exactly.
// - The input gradient's "brgconv_strided" ran at 0.45-1.0x (mostly near 0.55x) the rate of
//   the next choice, "jit_1x1", on ResNet-18's shortcuts, in float32 and bfloat16
//   (bench/README.md, "Convolutions").
// - The weight gradient's "jit_1x1" (AVX2) writes past the end of its scratchpad on one
//   thread when the input channels are not a multiple of its vector width: the heap was
//   corrupted (a test's crash), and a guard page after the scratchpad faulted for 3 or 5
//   channels at stride 2 and 3. The next choice ("jit") did not.
template <typename PrimitiveDesc>
void PassOver(PrimitiveDesc& pd, const Geometry& g, const char* impl) {
  const auto one = [](int64_t n) { return n == 1; };
  const bool strided = !std::all_of(g.strides.begin(), g.strides.end(), one);
  if (!strided || !std::all_of(g.weights.begin() + 2, g.weights.end(), one)) return;
  // next_impl() keeps the last choice when there is no other.
  while (std::string(pd.impl_info_str()).rfind(impl, 0) == 0 && pd.next_impl()) {
  }
}

std::shared_ptr<Primitive> Build(Direction direction, const Geometry& g) {
  const memory::desc src(g.src, g.type, g.data_tag), dst(g.dst, g.type, g.data_tag);
  const memory::desc any_weights(g.weights, g.type, memory::format_tag::any);
  const memory::desc user_weights(g.weights, g.type, g.weights_tag);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // per call: concurrent devices
  const auto direct = dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::primitive_desc forward(
      Engine(), dnnl::prop_kind::forward_training, direct, src, any_weights, dst, g.strides,
      g.pad_lo, g.pad_hi, attr);
  auto p = std::make_shared<Primitive>();
  p->user_weights = user_weights;
  if (direction == kForward) {
    p->primitive = dnnl::convolution_forward(forward);
    p->scratchpad = forward.scratchpad_desc();
    p->weights = forward.weights_desc();
  } else if (direction == kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc data(
        Engine(), direct, src, any_weights, dst, g.strides, g.pad_lo, g.pad_hi, forward, attr);
    PassOver(data, g, "brgconv_strided");
    p->primitive = dnnl::convolution_backward_data(data);
    p->scratchpad = data.scratchpad_desc();
    p->weights = data.weights_desc();
  } else {
    dnnl::convolution_backward_weights::primitive_desc weights(
        Engine(), direct, src, any_weights, dst, g.strides, g.pad_lo, g.pad_hi, forward, attr);
    if (g.weights[1] % 16 != 0) PassOver(weights, g, "jit_1x1");  // AVX-512's width, AVX2's too
    p->primitive = dnnl::convolution_backward_weights(weights);
    p->scratchpad = weights.scratchpad_desc();
    p->weights = weights.diff_weights_desc();
  }
  return p;
}

// A primitive divides its work among the OpenMP threads its creating thread could use then
// (omp_get_max_threads()), and opens that many on every call, whatever the caller has set
// since. So Run sets a call's threads before it asks for the primitive, and the cache keeps
// one per thread count. (Built before the threads were set, on an XLA thread that may use
// every core, each of two devices' calls opened two threads on the two cores, and the
// stem's weight gradient, whose threads meet at a spinning barrier, took 3.1 ms per call
// inside a program where it now takes 1.7.)
std::shared_ptr<Primitive> Cached(Direction direction, const Geometry& g, int threads) {
  static std::mutex mutex;
  static std::map<std::vector<int64_t>, std::shared_ptr<Primitive>> cache;
  std::vector<int64_t> key{direction, static_cast<int64_t>(g.type), threads};
  for (const auto* dims : {&g.src, &g.weights, &g.dst, &g.strides, &g.pad_lo, &g.pad_hi}) {
    key.push_back(static_cast<int64_t>(dims->size()));
    key.insert(key.end(), dims->begin(), dims->end());
  }
  std::lock_guard<std::mutex> lock(mutex);
  auto& entry = cache[key];
  if (!entry) entry = Build(direction, g);
  return entry;
}

// The process's cores as a budget for the calls' OpenMP threads. XLA runs independent calls
// side by side (the two views' passes); two calls that each take every core would
// oversubscribe them, and OpenMP's spinning threads then waste most of it (on one device in
// bfloat16, the step's convolutions took twice as long). So a call waits until its threads
// fit beside the running calls'; with one device per core each call takes one core and they
// all run at once.
class Cores {
 public:
  class Held {
   public:
    Held(Cores& cores, int n) : cores_(cores), n_(n) {}
    Held(const Held&) = delete;
    ~Held() { cores_.Release(n_); }
   private:
    Cores& cores_;
    int n_;
  };

  Held Take(int n) {
    std::unique_lock<std::mutex> lock(mutex_);
    n = std::max(1, std::min(n, total_));
    free_.wait(lock, [&] { return used_ + n <= total_; });
    used_ += n;
    return Held(*this, n);
  }

 private:
  void Release(int n) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      used_ -= n;
    }
    free_.notify_all();
  }

  std::mutex mutex_;
  std::condition_variable free_;
  int used_ = 0;
  const int total_ = omp_get_num_procs();
};

// The three handlers share this body: `a` and `b` are the operands in the order of the
// header's table, `out` the result, and `x`/`w`/`y` name the buffers' roles.
ffi::Error Run(Direction direction, ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
               ffi::Span<const int64_t> strides, ffi::Span<const int64_t> pad_lo,
               ffi::Span<const int64_t> pad_hi, int64_t threads) {
  const ffi::DataType type = a.element_type();
  if ((type != ffi::F32 && type != ffi::BF16) || b.element_type() != type ||
      out->element_type() != type) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jaxssl oneDNN convolution: all float32 or all bfloat16 only");
  }
  const auto dt = type == ffi::F32 ? memory::data_type::f32 : memory::data_type::bf16;
  const ffi::AnyBuffer* x = direction == kBackwardData ? nullptr : &a;
  const ffi::AnyBuffer* w = direction == kBackwardWeights ? nullptr : &b;
  const ffi::Span<const int64_t> x_dims = x ? x->dimensions() : out->dimensions();
  const ffi::Span<const int64_t> w_dims = w ? w->dimensions() : out->dimensions();
  const ffi::Span<const int64_t> y_dims =
      direction == kForward ? out->dimensions() : direction == kBackwardData ? a.dimensions()
                                                                             : b.dimensions();
  try {
    const Geometry g = Describe(x_dims, w_dims, y_dims, strides, pad_lo, pad_hi, dt);
    static Cores cores;
    const int n = threads > 0 ? static_cast<int>(threads) : omp_get_max_threads();
    const Cores::Held held = cores.Take(n);
    omp_set_num_threads(n);
    const auto p = Cached(direction, g, n);
    dnnl::stream stream(Engine());
    memory x_mem(memory::desc(g.src, dt, g.data_tag), Engine(),
                 x ? x->untyped_data() : out->untyped_data());
    memory y_mem(memory::desc(g.dst, dt, g.data_tag), Engine(),
                 direction == kForward ? out->untyped_data()
                 : direction == kBackwardData ? a.untyped_data() : b.untyped_data());
    memory user_w(p->user_weights, Engine(), w ? w->untyped_data() : out->untyped_data());
    memory w_mem = p->weights == p->user_weights ? user_w : memory(p->weights, Engine());
    memory scratchpad(p->scratchpad, Engine());
    if (direction != kBackwardWeights && w_mem != user_w) {
      dnnl::reorder(user_w, w_mem).execute(stream, user_w, w_mem);
    }
    // oneDNN 3.2's bfloat16 weight gradient reads its scratchpad before writing all of it
    // where a kernel tap sees only padding (a 3x3 kernel over one pixel): now and then the
    // gradient of such taps came out as garbage. Zeroed first, it never did (and the time
    // zeroing takes was within the noise on ResNet-18's convolutions).
    if (direction == kBackwardWeights && dt == memory::data_type::bf16) {
      std::memset(scratchpad.get_data_handle(), 0, p->scratchpad.get_size());
    }
    if (direction == kForward) {
      p->primitive.execute(stream, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_WEIGHTS, w_mem},
                                    {DNNL_ARG_DST, y_mem}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
    } else if (direction == kBackwardData) {
      p->primitive.execute(stream, {{DNNL_ARG_DIFF_SRC, x_mem}, {DNNL_ARG_WEIGHTS, w_mem},
                                    {DNNL_ARG_DIFF_DST, y_mem}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
    } else {
      p->primitive.execute(stream, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_DIFF_WEIGHTS, w_mem},
                                    {DNNL_ARG_DIFF_DST, y_mem}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
      if (w_mem != user_w) dnnl::reorder(w_mem, user_w).execute(stream, w_mem, user_w);
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal,
                      std::string("jaxssl oneDNN convolution: ") + e.what());
  }
  return ffi::Error::Success();
}

template <Direction direction>
ffi::Error Handler(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
                   ffi::Span<const int64_t> strides, ffi::Span<const int64_t> pad_lo,
                   ffi::Span<const int64_t> pad_hi, int64_t threads) {
  return Run(direction, a, b, out, strides, pad_lo, pad_hi, threads);
}

}  // namespace

extern "C" int JaxsslNoAvx512() {  // 1 where oneDNN has no AVX-512 on this CPU, else 0
  return dnnl::get_effective_cpu_isa() < dnnl::cpu_isa::avx512_core;  // ISAs nest as bitmasks
}

// 1 where oneDNN runs bfloat16 in hardware on this CPU (AVX512-BF16 or AMX), else 0.
extern "C" int JaxsslNativeBfloat16() {
  using isa = dnnl::cpu_isa;
  switch (dnnl::get_effective_cpu_isa()) {
    case isa::avx512_core_bf16:
    case isa::avx512_core_amx:
    case isa::avx512_core_amx_fp16:
      return 1;
    default:
      return 0;
  }
}

#define JAXSSL_CONV_HANDLER(name, direction)                                              \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, Handler<direction>,                                 \
                                ffi::Ffi::Bind()                                          \
                                    .Arg<ffi::AnyBuffer>()                                \
                                    .Arg<ffi::AnyBuffer>()                                \
                                    .Ret<ffi::AnyBuffer>()                                \
                                    .Attr<ffi::Span<const int64_t>>("strides")            \
                                    .Attr<ffi::Span<const int64_t>>("pad_lo")             \
                                    .Attr<ffi::Span<const int64_t>>("pad_hi")             \
                                    .Attr<int64_t>("threads"));

JAXSSL_CONV_HANDLER(ConvForward, kForward)
JAXSSL_CONV_HANDLER(ConvBackwardData, kBackwardData)
JAXSSL_CONV_HANDLER(ConvBackwardWeights, kBackwardWeights)
