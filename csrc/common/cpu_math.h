// Vectorisable float maths for the CPU kernels: a polynomial exp that gcc inlines into a loop and vectorises, where
// a libm call would stop the vectorisation (and cost ~20 ns a call). Shared by gan_loss and bias_act.
#pragma once
#include <cstdint>
#include <cstring>

namespace fastgan {
namespace cpu {

// exp(x) for -87 <= x <= 87 (callers clamp as their inputs need): Cody-Waite reduction and the cephes expf
// polynomial, ~1 ulp. n = round(x / ln 2) comes from the 1.5 * 2^23 trick and 2^n from the same float's bits: no
// float -> int conversion and no comparison, so the loops that call it vectorise.
inline __attribute__((always_inline)) float exp_poly_f32(float x) {
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t shifted_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof shifted_bits);
  const int32_t bits = (shifted_bits - 0x4B400000 + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace cpu
}  // namespace fastgan
