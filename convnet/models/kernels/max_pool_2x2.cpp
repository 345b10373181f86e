// 2×2 max pooling, stride 2, no padding, floor mode, on the CPU: the forward pass, for dense
// float32 and bfloat16 tensors, channels-last or contiguous, with or without the indices of the
// maxima that PyTorch's backward pass (max_pool2d_with_indices_backward) reads.
//
// Bit for bit what PyTorch's native max_pool2d computes (ATen's cpu/MaxPoolKernel.cpp):
// a value replaces the running maximum when it is greater or NaN, scanning the window in
// row-major order, so ties go to the first position and NaN wins (bfloat16 NaNs come out as
// 0x7FC0, as the native kernel's float accumulator writes them).
// Called through ctypes from convnet/models/pooling.py; no PyTorch headers, so it compiles
// in about a second.

#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

// An element's bits as an unsigned integer, and its value as a float: float32 is itself,
// bfloat16 is the top half of a float32.
inline uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}
inline uint32_t bits_of(uint16_t value) { return value; }
inline float value_of(uint32_t bits, float) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}
inline float value_of(uint32_t bits, uint16_t) { return value_of(bits << 16, 0.0f); }
inline float from_bits(uint32_t bits, float) { return value_of(bits, 0.0f); }
inline uint16_t from_bits(uint32_t bits, uint16_t) { return static_cast<uint16_t>(bits); }

// `when ? yes : no` by masking, so the compiler emits no branch (random data mispredicts
// half of them: 16 ns per window here, against a few without).
inline uint32_t choose(bool when, uint32_t yes, uint32_t no) {
  return no ^ ((no ^ yes) & (0u - static_cast<uint32_t>(when)));
}

// A float's bits in T. bfloat16 as c10::BFloat16 converts a float (round to nearest even; the
// floats here are exact in bfloat16, so that is the top half), with every NaN as 0x7FC0: the
// native kernel accumulates bfloat16 in float, so its NaNs come out in this form.
inline uint32_t store_bits(float value, float) { return bits_of(value); }
inline uint32_t store_bits(float value, uint16_t) {
  return choose(std::isnan(value), 0x7FC0u, bits_of(value) >> 16);
}

// Sizes: batch, channels, input height and width; strides in elements, (n, c, h, w).
struct Shape {
  int64_t batch, channels, height, width;
  const int64_t* in;   // input strides
  const int64_t* out;  // output strides
};

// One step of the scan: does `challenger` replace `best`? Bitwise | rather than ||, so the
// loops below have no branch and vectorize.
inline bool replaces(float challenger, float best) {
  return (challenger > best) | std::isnan(challenger);
}

// `count` windows whose top-left elements lie `step` apart (1: channels-last, the channels of
// one window position; 2: contiguous, the positions of one row). `right` and `down` lead to the
// window's other elements. Scanning a, b, c, d in order equals pairing max(a, b) with
// max(c, d) under the same rule: the first of equal values, the last NaN (pairing a with c
// instead would break ties wrongly). With `indexed`, each maximum's index in its input plane
// (row · width + column) too, as PyTorch's max_pool2d_with_indices writes it: `first` is the
// first window's top-left index, and the windows' top-left indices lie `step - 1` · 2 apart
// (channels-last: every window of the run is at the same position).
template <typename T, int step, bool indexed>
inline void pool_run(const T* __restrict__ top, int64_t right, int64_t down, int64_t count,
                     T* __restrict__ output, int64_t* __restrict__ indices, int64_t first,
                     int64_t width) {
  const T* __restrict__ bottom = top + down;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t at = step * i;
    const uint32_t a = bits_of(top[at]), b = bits_of(top[at + right]);
    const uint32_t c = bits_of(bottom[at]), d = bits_of(bottom[at + right]);
    const bool take_b = replaces(value_of(b, T()), value_of(a, T()));
    const bool take_d = replaces(value_of(d, T()), value_of(c, T()));
    const uint32_t upper = choose(take_b, b, a), lower = choose(take_d, d, c);
    const bool take_lower = replaces(value_of(lower, T()), value_of(upper, T()));
    const uint32_t best = choose(take_lower, lower, upper);
    output[i] = from_bits(store_bits(value_of(best, T()), T()), T());
    if (indexed) {
      const int64_t offset = choose(take_lower, width + take_d, take_b);
      indices[i] = first + (step - 1) * 2 * i + offset;
    }
  }
}

// The images [begin, end) of the batch. Dense tensors only: channels-last (channel stride 1)
// or contiguous (width stride 1); the output and the indices have the input's layout.
template <typename T, bool indexed>
void forward(const T* input, T* output, int64_t* indices, const Shape& s, int64_t begin,
             int64_t end) {
  const int64_t out_h = s.height / 2, out_w = s.width / 2, width = s.width;
  const int64_t* in = s.in;
  const int64_t* out = s.out;
  for (int64_t n = begin; n < end; ++n) {
    if (in[1] == 1) {  // channels-last: each window position's channels are contiguous
      for (int64_t oh = 0; oh < out_h; ++oh)
        for (int64_t ow = 0; ow < out_w; ++ow) {
          const int64_t to = n * out[0] + oh * out[2] + ow * out[3];
          pool_run<T, 1, indexed>(input + n * in[0] + 2 * oh * in[2] + 2 * ow * in[3], in[3],
                                  in[2], s.channels, output + to,
                                  indexed ? indices + to : nullptr, 2 * oh * width + 2 * ow,
                                  width);
        }
    } else {  // contiguous: each row's windows are two elements apart
      for (int64_t c = 0; c < s.channels; ++c)
        for (int64_t oh = 0; oh < out_h; ++oh) {
          const int64_t to = n * out[0] + c * out[1] + oh * out[2];
          pool_run<T, 2, indexed>(input + n * in[0] + c * in[1] + 2 * oh * in[2], 1, in[2],
                                  out_w, output + to, indexed ? indices + to : nullptr,
                                  2 * oh * width, width);
        }
    }
  }
}

// The batch split over `threads` OpenMP threads, whole images each: PyTorch's own pool, as
// this library is linked to the OpenMP runtime PyTorch has loaded (libgomp.so.1). Fewer than
// SPLIT_ELEMENTS input elements (14 images of C1's 6 maps of 28×28) stay on this thread,
// outside any OpenMP construct: one image, as served, is microseconds of work.
constexpr int64_t SPLIT_ELEMENTS = 65536;

template <typename T>
void forward_threaded(const T* input, T* output, int64_t* indices, const Shape& s,
                      int64_t threads) {
  const auto run = indices == nullptr ? forward<T, false> : forward<T, true>;
  const int64_t elements = s.batch * s.channels * s.height * s.width;
  if (threads < 2 || s.batch < 2 || elements < SPLIT_ELEMENTS) {
    run(input, output, indices, s, 0, s.batch);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t n = 0; n < s.batch; ++n) run(input, output, indices, s, n, n + 1);
}

}  // namespace

extern "C" {

// dtype: 0 float32, 1 bfloat16. sizes: n, c, h, w of the input. indices: null, or int64 with
// the output's strides. threads: how many to split the batch over.
int convnet_max_pool_2x2_forward(const void* input, void* output, int64_t* indices, int dtype,
                                 const int64_t* sizes, const int64_t* in_strides,
                                 const int64_t* out_strides, int64_t threads) {
  const Shape s{sizes[0], sizes[1], sizes[2], sizes[3], in_strides, out_strides};
  if (dtype == 0) {
    forward_threaded(static_cast<const float*>(input), static_cast<float*>(output), indices, s,
                     threads);
  } else if (dtype == 1) {
    forward_threaded(static_cast<const uint16_t*>(input), static_cast<uint16_t*>(output),
                     indices, s, threads);
  } else {
    return 1;
  }
  return 0;
}

}  // extern "C"
