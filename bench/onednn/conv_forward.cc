// A probe, not part of jaxssl: oneDNN's forward convolution (NHWC input, HWIO kernel,
// float32) as an XLA FFI custom call, to measure what a convolution library reaches inside a
// jitted JAX program on this CPU (bench/onednn_probe.py). Primitives are cached by shape.
// Build: g++ -O3 -std=c++17 -shared -fPIC -I$(python -c "import jax; print(jax.ffi.include_dir())")
//        conv_forward.cc -o libconv_forward.so -ldnnl   (Debian: libdnnl-dev)
#include <map>
#include <mutex>
#include <tuple>
#include <memory>
#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using namespace dnnl;

static engine& eng() { static engine e(engine::kind::cpu, 0); return e; }

struct Fwd {
  convolution_forward::primitive_desc pd;
  convolution_forward prim;
  memory::desc user_w;
};
using Key = std::tuple<int64_t,int64_t,int64_t,int64_t,int64_t,int64_t,int64_t,int64_t,int64_t,int64_t>;
static std::map<Key, std::shared_ptr<Fwd>> cache;
static std::mutex mu;

static ffi::Error ConvFwdImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                              ffi::ResultBuffer<ffi::F32> y, int64_t stride, int64_t pad_lo,
                              int64_t pad_hi) {
  auto xd = x.dimensions(); auto wd = w.dimensions(); auto yd = y->dimensions();
  int64_t N = xd[0], H = xd[1], W = xd[2], C = xd[3];
  int64_t KH = wd[0], KW = wd[1], F = wd[3];
  int64_t Ho = yd[1], Wo = yd[2];
  Key key{N, H, W, C, KH, KW, F, stride, pad_lo, pad_hi};
  std::shared_ptr<Fwd> f;
  {
    std::lock_guard<std::mutex> g(mu);
    auto it = cache.find(key);
    if (it == cache.end()) {
      auto dt = memory::data_type::f32;
      memory::desc src({N, C, H, W}, dt, memory::format_tag::nhwc);
      memory::desc wany({F, C, KH, KW}, dt, memory::format_tag::any);
      memory::desc dst({N, F, Ho, Wo}, dt, memory::format_tag::nhwc);
      auto d = convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct,
                                         src, wany, dst, {stride, stride}, {pad_lo, pad_lo}, {pad_hi, pad_hi});
      auto pd = convolution_forward::primitive_desc(d, eng());
      f = std::make_shared<Fwd>(Fwd{pd, convolution_forward(pd), memory::desc({F, C, KH, KW}, dt, memory::format_tag::hwio)});
      cache[key] = f;
    } else f = it->second;
  }
  stream s(eng());
  memory src_m(f->pd.src_desc(), eng(), x.typed_data());
  memory dst_m(f->pd.dst_desc(), eng(), y->typed_data());
  memory user_w(f->user_w, eng(), w.typed_data());
  memory wei_m = user_w;
  if (f->pd.weights_desc() != f->user_w) {
    wei_m = memory(f->pd.weights_desc(), eng());
    reorder(user_w, wei_m).execute(s, user_w, wei_m);
  }
  f->prim.execute(s, {{DNNL_ARG_SRC, src_m}, {DNNL_ARG_WEIGHTS, wei_m}, {DNNL_ARG_DST, dst_m}});
  s.wait();
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvFwd, ConvFwdImpl,
    ffi::Ffi::Bind().Arg<ffi::Buffer<ffi::F32>>().Arg<ffi::Buffer<ffi::F32>>()
        .Ret<ffi::Buffer<ffi::F32>>().Attr<int64_t>("stride").Attr<int64_t>("pad_lo")
        .Attr<int64_t>("pad_hi"));
