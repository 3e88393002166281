// GGUF block dequantisers (gguf-py 0.19.0 gguf/quants.py `dequantize_blocks`, same float32
// operation order; ComfyUI-GGUF dequant.py does the same block maths, in float16 unless asked for
// float32) and the fp8 rule. Every function maps a [n_blocks, type_size] uint8 tensor to a
// [n_blocks, block_size] float32 tensor.
#include "models/dequant.h"

#include <map>
#include <mutex>
#include <string>

namespace qwen::models {

namespace {

using io::GgmlType;
using torch::Tensor;

constexpr auto kF32 = torch::kFloat32;

Tensor shr(const Tensor& t, int64_t s) { return s ? torch::bitwise_right_shift(t, s) : t; }
Tensor shl(const Tensor& t, int64_t s) { return s ? torch::bitwise_left_shift(t, s) : t; }

// Bytes [off, off + len) of every block: [n, len] uint8 (a strided view).
Tensor field(const Tensor& b, int64_t off, int64_t len) { return b.narrow(1, off, len); }

// The little-endian float16 at byte `off` of every block, as float32 [n, 1].
Tensor f16_at(const Tensor& b, int64_t off) {
  return field(b, off, 2).contiguous().view(torch::kFloat16).to(kF32);
}

// x >> shifts[k] for each k, stacked at `dim` (the numpy `>> np.array([...]).reshape(...)`).
Tensor shifts(const Tensor& x, std::initializer_list<int64_t> s, int64_t dim) {
  std::vector<Tensor> parts;
  parts.reserve(s.size());
  for (int64_t v : s) parts.push_back(shr(x, v));
  return torch::stack(parts, dim);
}

// Q4_0 nibble order for a [n, 16] byte field: values 0..15 = low nibbles, 16..31 = high nibbles.
Tensor nibbles32(const Tensor& qs) { return torch::cat({qs & 0x0F, shr(qs, 4)}, 1); }

// The 32 bits of the little-endian u32 at byte `off`, [n, 32] uint8 (bit j of the word at j).
Tensor bits32(const Tensor& b, int64_t off) {
  return (shifts(field(b, off, 4), {0, 1, 2, 3, 4, 5, 6, 7}, 2) & 1).reshape({b.size(0), 32});
}

// IQ4_NL / IQ4_XS value table (ggml-common.h kvalues_iq4nl), one copy per device.
Tensor kvalues_on(const torch::Device& device) {
  static std::mutex mu;
  static std::map<std::string, Tensor> cache;
  std::lock_guard<std::mutex> lock(mu);
  const std::string key = device.str();
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  Tensor t = torch::tensor({-127.f, -104.f, -83.f, -65.f, -49.f, -35.f, -22.f, -10.f, 1.f, 13.f,
                            25.f, 38.f, 53.f, 69.f, 89.f, 113.f},
                           torch::TensorOptions().dtype(kF32))
                 .to(device);
  cache.emplace(key, t);
  return t;
}

Tensor lookup_kvalues(const Tensor& idx) {
  Tensor table = kvalues_on(idx.device());
  return table.index_select(0, idx.reshape({-1}).to(torch::kInt32)).view(idx.sizes());
}

// ---- 32-value blocks ----------------------------------------------------------------------------

Tensor q8_0(const Tensor& b) {  // d, qs int8[32]: d * q
  const Tensor d = f16_at(b, 0);
  return field(b, 2, 32).view(torch::kInt8).to(kF32).mul_(d);
}

Tensor q4_0(const Tensor& b) {  // d, qs[16]: d * (q - 8)
  const Tensor d = f16_at(b, 0);
  return nibbles32(field(b, 2, 16)).to(kF32).sub_(8).mul_(d);
}

Tensor q4_1(const Tensor& b) {  // d, m, qs[16]: d * q + m
  const Tensor d = f16_at(b, 0), m = f16_at(b, 2);
  return nibbles32(field(b, 4, 16)).to(kF32).mul_(d).add_(m);
}

Tensor q5_0(const Tensor& b) {  // d, qh u32, qs[16]: d * (q - 16)
  const Tensor d = f16_at(b, 0);
  const Tensor q = nibbles32(field(b, 6, 16)) | shl(bits32(b, 2), 4);
  return q.to(kF32).sub_(16).mul_(d);
}

Tensor q5_1(const Tensor& b) {  // d, m, qh u32, qs[16]: d * q + m
  const Tensor d = f16_at(b, 0), m = f16_at(b, 2);
  const Tensor q = nibbles32(field(b, 8, 16)) | shl(bits32(b, 4), 4);
  return q.to(kF32).mul_(d).add_(m);
}

Tensor iq4_nl(const Tensor& b) {  // d, qs[16] (indices as Q4_0): d * K[idx]
  const Tensor d = f16_at(b, 0);
  return lookup_kvalues(nibbles32(field(b, 2, 16))).mul_(d);
}

// ---- 256-value super-blocks (QK_K) -----------------------------------------------------------

Tensor q2_k(const Tensor& b) {  // scales[16], qs[64], d, dmin
  const int64_t n = b.size(0);
  const Tensor sc = field(b, 0, 16);
  const Tensor d = f16_at(b, 80), dmin = f16_at(b, 82);
  const Tensor dl = (d * (sc & 0x0F).to(kF32)).unsqueeze(-1);    // [n, 16, 1]
  const Tensor ml = (dmin * shr(sc, 4).to(kF32)).unsqueeze(-1);  // [n, 16, 1]
  const Tensor q = shifts(field(b, 16, 64).reshape({n, 2, 32}), {0, 2, 4, 6}, 2) & 3;
  return q.reshape({n, 16, 16}).to(kF32).mul_(dl).sub_(ml).reshape({n, 256});
}

Tensor q3_k(const Tensor& b) {  // hmask[32], qs[64], scales[12], d
  const int64_t n = b.size(0);
  const Tensor d = f16_at(b, 108);
  const Tensor s = field(b, 96, 12);
  const Tensor ls = shifts(field(s, 0, 8), {0, 4}, 1).reshape({n, 16}) & 0x0F;
  const Tensor hs = shifts(field(s, 8, 4), {0, 2, 4, 6}, 1).reshape({n, 16}) & 0x03;
  const Tensor sc = (ls | shl(hs, 4)).to(kF32).sub_(32);
  const Tensor dl = (d * sc).unsqueeze(-1);  // [n, 16, 1]
  const Tensor ql = shifts(field(b, 32, 64).reshape({n, 2, 32}), {0, 2, 4, 6}, 2) & 3;
  const Tensor qh = shifts(field(b, 0, 32).reshape({n, 1, 32}), {0, 1, 2, 3, 4, 5, 6, 7}, 2) & 1;
  // High bit clear = subtract 4 ("strangely, the offset is zero when the bitmask is 1").
  const Tensor q =
      (ql.reshape({n, 16, 16}) - shl(qh.reshape({n, 16, 16}) ^ 1, 2)).view(torch::kInt8).to(kF32);
  return (dl * q).reshape({n, 256});
}

// Q4_K / Q5_K packed 6-bit scales and mins (gguf-py Q4_K.get_scale_min): [n, 8] each.
std::pair<Tensor, Tensor> scale_min_k4(const Tensor& s) {
  const Tensor d = field(s, 0, 4), m = field(s, 4, 4), md = field(s, 8, 4);
  Tensor sc = torch::cat({d & 0x3F, (md & 0x0F) | (shr(d, 2) & 0x30)}, 1);
  Tensor mn = torch::cat({m & 0x3F, shr(md, 4) | (shr(m, 2) & 0x30)}, 1);
  return {sc, mn};
}

Tensor q4_k(const Tensor& b) {  // d, dmin, scales[12], qs[128]
  const int64_t n = b.size(0);
  const Tensor d = f16_at(b, 0), dmin = f16_at(b, 2);
  const auto [sc, mn] = scale_min_k4(field(b, 4, 12));
  const Tensor dl = (d * sc.to(kF32)).unsqueeze(-1);     // [n, 8, 1]
  const Tensor ml = (dmin * mn.to(kF32)).unsqueeze(-1);  // [n, 8, 1]
  const Tensor q = shifts(field(b, 16, 128).reshape({n, 4, 32}), {0, 4}, 2) & 0x0F;
  return q.reshape({n, 8, 32}).to(kF32).mul_(dl).sub_(ml).reshape({n, 256});
}

Tensor q5_k(const Tensor& b) {  // d, dmin, scales[12], qh[32], qs[128]
  const int64_t n = b.size(0);
  const Tensor d = f16_at(b, 0), dmin = f16_at(b, 2);
  const auto [sc, mn] = scale_min_k4(field(b, 4, 12));
  const Tensor dl = (d * sc.to(kF32)).unsqueeze(-1);
  const Tensor ml = (dmin * mn.to(kF32)).unsqueeze(-1);
  const Tensor ql = shifts(field(b, 48, 128).reshape({n, 4, 32}), {0, 4}, 2) & 0x0F;
  const Tensor qh = shifts(field(b, 16, 32).reshape({n, 1, 32}), {0, 1, 2, 3, 4, 5, 6, 7}, 2) & 1;
  const Tensor q = ql.reshape({n, 8, 32}) | shl(qh.reshape({n, 8, 32}), 4);
  return q.to(kF32).mul_(dl).sub_(ml).reshape({n, 256});
}

Tensor q6_k(const Tensor& b) {  // ql[128], qh[64], scales int8[16], d
  const int64_t n = b.size(0);
  const Tensor d = f16_at(b, 208);
  const Tensor dl = (d * field(b, 192, 16).view(torch::kInt8).to(kF32)).unsqueeze(-1);  // [n,16,1]
  const Tensor ql = shifts(field(b, 0, 128).reshape({n, 2, 64}), {0, 4}, 2) & 0x0F;
  const Tensor qh = shifts(field(b, 128, 64).reshape({n, 2, 32}), {0, 2, 4, 6}, 2) & 3;
  const Tensor q = (ql.reshape({n, 8, 32}) | shl(qh.reshape({n, 8, 32}), 4)).to(kF32).sub_(32);
  return (dl * q.reshape({n, 16, 16})).reshape({n, 256});
}

Tensor iq4_xs(const Tensor& b) {  // d, scales_h u16, scales_l[4], qs[128]
  const int64_t n = b.size(0);
  const Tensor d = f16_at(b, 0);
  const Tensor lo = shifts(field(b, 4, 4), {0, 4}, 2).reshape({n, 8}) & 0x0F;
  const Tensor hi = shifts(field(b, 2, 2), {0, 2, 4, 6}, 2).reshape({n, 8}) & 0x03;
  const Tensor dl = (d * (lo | shl(hi, 4)).to(kF32).sub_(32)).unsqueeze(-1);  // [n, 8, 1]
  const Tensor idx = shifts(field(b, 8, 128).reshape({n, 8, 16}), {0, 4}, 2) & 0x0F;
  return (dl * lookup_kvalues(idx.reshape({n, 8, 32}))).reshape({n, 256});
}

// Aligned for a `size`-byte element view (copies when the mapping is not).
Tensor aligned(const Tensor& raw, size_t size) {
  return reinterpret_cast<uintptr_t>(raw.data_ptr()) % size == 0 ? raw : raw.clone();
}

}  // namespace

Tensor dequantize_ggml(const Tensor& blocks, GgmlType type, const std::vector<int64_t>& shape,
                       torch::Dtype dtype) {
  const io::GgmlTypeTraits& tr = io::ggml_traits(type);
  if (!io::ggml_type_supported(type))
    throw io::CheckpointError(std::string("GGUF type ") + tr.name +
                              " cannot be dequantised (supported: " + io::ggml_supported_types() +
                              ")");
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  const std::string what = std::string(tr.name) + " tensor of shape " + io::shape_to_string(shape);
  if (blocks.scalar_type() != torch::kUInt8)
    throw io::CheckpointError(what + ": the blocks must be a uint8 tensor");
  if (numel % tr.block_size != 0 ||
      blocks.numel() != numel / tr.block_size * static_cast<int64_t>(tr.type_size))
    throw io::CheckpointError(what + " needs " +
                              std::to_string(numel / tr.block_size * tr.type_size) +
                              " bytes of whole blocks, given " + std::to_string(blocks.numel()));
  const Tensor raw = blocks.contiguous().reshape({-1});
  Tensor out;
  switch (type) {
    case GgmlType::F32:
      out = aligned(raw, 4).view(kF32);
      break;
    case GgmlType::F16:
      out = aligned(raw, 2).view(torch::kFloat16).to(kF32);
      break;
    case GgmlType::BF16:  // bits << 16: exactly bfloat16 -> float32
      out = aligned(raw, 2).view(torch::kBFloat16).to(kF32);
      break;
    default: {
      const Tensor b = raw.view({numel / tr.block_size, static_cast<int64_t>(tr.type_size)});
      switch (type) {
        case GgmlType::Q8_0:
          out = q8_0(b);
          break;
        case GgmlType::Q4_0:
          out = q4_0(b);
          break;
        case GgmlType::Q4_1:
          out = q4_1(b);
          break;
        case GgmlType::Q5_0:
          out = q5_0(b);
          break;
        case GgmlType::Q5_1:
          out = q5_1(b);
          break;
        case GgmlType::Q2_K:
          out = q2_k(b);
          break;
        case GgmlType::Q3_K:
          out = q3_k(b);
          break;
        case GgmlType::Q4_K:
          out = q4_k(b);
          break;
        case GgmlType::Q5_K:
          out = q5_k(b);
          break;
        case GgmlType::Q6_K:
          out = q6_k(b);
          break;
        case GgmlType::IQ4_NL:
          out = iq4_nl(b);
          break;
        case GgmlType::IQ4_XS:
          out = iq4_xs(b);
          break;
        default:
          break;  // unreachable: ggml_type_supported() above
      }
    }
  }
  out = out.reshape(shape);
  return dtype == kF32 ? out : out.to(dtype);
}

Tensor dequantize_fp8(const Tensor& w, const Tensor& scale, torch::Dtype dtype) {
  if (w.scalar_type() != torch::kFloat8_e4m3fn && w.scalar_type() != torch::kFloat8_e5m2)
    throw io::CheckpointError(std::string("dequantize_fp8: expected a float8 tensor, given ") +
                              c10::toString(w.scalar_type()));
  Tensor out = w.to(kF32);
  if (scale.defined()) {
    if (scale.numel() != 1 || !scale.is_floating_point())
      throw io::CheckpointError("dequantize_fp8: the scale must be one float, given shape " +
                                io::shape_to_string(scale.sizes().vec()));
    out.mul_(scale.to(w.device(), kF32).reshape({}));
  }
  return dtype == kF32 ? out : out.to(dtype);
}

}  // namespace qwen::models
