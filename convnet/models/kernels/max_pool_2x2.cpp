// 2×2 max pooling, stride 2, no padding, floor mode, on the CPU: the forward pass of
// inference, for dense float32 and bfloat16 tensors, channels-last or contiguous.
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
// instead would break ties wrongly).
template <typename T, int step>
inline void pool_run(const T* __restrict__ top, int64_t right, int64_t down, int64_t count,
                     T* __restrict__ output) {
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
  }
}

// Dense tensors only: channels-last (channel stride 1) or contiguous (width stride 1); the
// output has the same layout as the input.
template <typename T>
void forward(const T* input, T* output, const Shape& s) {
  const int64_t out_h = s.height / 2, out_w = s.width / 2;
  const int64_t* in = s.in;
  const int64_t* out = s.out;
  for (int64_t n = 0; n < s.batch; ++n) {
    if (in[1] == 1) {  // channels-last: each window position's channels are contiguous
      for (int64_t oh = 0; oh < out_h; ++oh)
        for (int64_t ow = 0; ow < out_w; ++ow) {
          const int64_t to = n * out[0] + oh * out[2] + ow * out[3];
          pool_run<T, 1>(input + n * in[0] + 2 * oh * in[2] + 2 * ow * in[3], in[3], in[2],
                         s.channels, output + to);
        }
    } else {  // contiguous: each row's windows are two elements apart
      for (int64_t c = 0; c < s.channels; ++c)
        for (int64_t oh = 0; oh < out_h; ++oh) {
          const int64_t to = n * out[0] + c * out[1] + oh * out[2];
          pool_run<T, 2>(input + n * in[0] + c * in[1] + 2 * oh * in[2], 1, in[2], out_w,
                         output + to);
        }
    }
  }
}

}  // namespace

extern "C" {

// dtype: 0 float32, 1 bfloat16. sizes: n, c, h, w of the input.
int convnet_max_pool_2x2_forward(const void* input, void* output, int dtype,
                                 const int64_t* sizes, const int64_t* in_strides,
                                 const int64_t* out_strides) {
  const Shape s{sizes[0], sizes[1], sizes[2], sizes[3], in_strides, out_strides};
  if (dtype == 0) {
    forward(static_cast<const float*>(input), static_cast<float*>(output), s);
  } else if (dtype == 1) {
    forward(static_cast<const uint16_t*>(input), static_cast<uint16_t*>(output), s);
  } else {
    return 1;
  }
  return 0;
}

}  // extern "C"
