//! The in-memory tensor pair every model stage consumes: normalised flux `x` and weight `w`.

/// A stack of galaxies as two dense row-major `[n, n_lines, size, size]` f32 tensors.
///
/// `x` is normalised flux (see the preprocessing docs); `w` is the per-pixel weight in the same
/// normalised units: 0 where the pixel is masked, otherwise the inverse variance of `x`
/// (IVAR carried through resampling, scaling and stretch) times the good-pixel fraction.
/// `Σ w (x − x̂)²` is therefore a χ² and `w > 0` is the usable-pixel mask.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cubes {
    /// Number of galaxies.
    pub n: usize,
    /// Number of lines (the model's sequence length).
    pub n_lines: usize,
    /// Grid side S.
    pub size: usize,
    /// Normalised flux, `n * n_lines * size * size` values.
    pub x: Vec<f32>,
    /// Weights, same shape as `x`.
    pub w: Vec<f32>,
}

impl Cubes {
    /// An all-zero stack of the given shape.
    pub fn zeros(n: usize, n_lines: usize, size: usize) -> Self {
        let len = n * n_lines * size * size;
        Self {
            n,
            n_lines,
            size,
            x: vec![0.0; len],
            w: vec![0.0; len],
        }
    }

    /// Values per galaxy (`n_lines * size * size`).
    pub fn galaxy_len(&self) -> usize {
        self.n_lines * self.size * self.size
    }

    /// The `x` and `w` slices of galaxy `i`.
    pub fn galaxy(&self, i: usize) -> (&[f32], &[f32]) {
        let len = self.galaxy_len();
        let r = i * len..(i + 1) * len;
        (&self.x[r.clone()], &self.w[r])
    }

    /// Mutable `x` and `w` slices of galaxy `i`.
    pub fn galaxy_mut(&mut self, i: usize) -> (&mut [f32], &mut [f32]) {
        let len = self.galaxy_len();
        let r = i * len..(i + 1) * len;
        (&mut self.x[r.clone()], &mut self.w[r])
    }

    /// The tensor shape `[n, n_lines, size, size]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.n, self.n_lines, self.size, self.size]
    }

    /// A new stack holding the galaxies at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Cubes {
        let len = self.galaxy_len();
        let mut out = Cubes::zeros(indices.len(), self.n_lines, self.size);
        for (k, &i) in indices.iter().enumerate() {
            let (x, w) = self.galaxy(i);
            out.x[k * len..(k + 1) * len].copy_from_slice(x);
            out.w[k * len..(k + 1) * len].copy_from_slice(w);
        }
        out
    }
}
