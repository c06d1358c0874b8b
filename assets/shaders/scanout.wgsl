// Draws one textured quad: a guest scanout or the guest's cursor.
//
// The texture holds the guest's pixels byte for byte (whatever the guest's format), so
// `channels` says which texel component holds red, green, blue and alpha; index 4 means
// "opaque". `rect` is the quad in normalized device coordinates (x0, y0, x1, y1), top-left
// first.

struct Params {
    rect: vec4<f32>,
    channels: vec4<u32>,
};

@group(0) @binding(0) var image: texture_2d<f32>;
@group(0) @binding(1) var image_sampler: sampler;
@group(0) @binding(2) var<uniform> params: Params;

struct VertexOut {
    @builtin(position) position: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

@vertex
fn vs_main(@builtin(vertex_index) index: u32) -> VertexOut {
    // A triangle strip: (0,0), (1,0), (0,1), (1,1).
    let corner = vec2<f32>(f32(index & 1u), f32(index >> 1u));
    var out: VertexOut;
    out.position = vec4<f32>(
        mix(params.rect.x, params.rect.z, corner.x),
        mix(params.rect.y, params.rect.w, corner.y),
        0.0,
        1.0,
    );
    out.uv = corner;
    return out;
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    let texel = textureSample(image, image_sampler, in.uv);
    var c = array<f32, 5>(texel.r, texel.g, texel.b, texel.a, 1.0);
    return vec4<f32>(
        c[min(params.channels.x, 4u)],
        c[min(params.channels.y, 4u)],
        c[min(params.channels.z, 4u)],
        c[min(params.channels.w, 4u)],
    );
}
