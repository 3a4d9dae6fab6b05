//! Special functions needed by the checks: log-gamma and a log-beta that
//! stays accurate when its arguments are huge (cumulative request counts of
//! 10^12 and more).
//!
//! Why not just `ln Γ(u) + ln Γ(v) − ln Γ(u+v)`? Each term is about
//! `n ln n` (≈ 3·10^13 for n = 10^12), and the statistics subtract
//! quantities of that size to get a number of order 1 (the log e-value),
//! which would leave only a few correct digits. [`ln_beta`] instead
//! returns the result split into the large part, written so that the caller
//! can cancel it analytically, and a small remainder (see
//! [`ln_beta_remainder`]).

/// `0.5 · ln(2π)`, the constant of Stirling's formula.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_7;

/// Lanczos approximation (g = 7, 9 coefficients): relative error about
/// 1e-15 for real arguments ≥ 0.5, which is all we need (the checks only
/// evaluate Γ at positive arguments).
const LANCZOS_G: f64 = 7.0;
const LANCZOS_COEF: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

/// Natural log of the gamma function for `z > 0`.
///
/// Lanczos for moderate arguments, Stirling's series (with the correction
/// of [`stirling_correction`]) for `z ≥ 10`, where it is both faster and
/// more accurate. Returns `+∞` for `z ≤ 0` or NaN (callers never pass
/// those; the value is chosen so that a bug shows as "no evidence" rather
/// than as a spurious decision).
pub fn ln_gamma(z: f64) -> f64 {
    if z.is_nan() || z <= 0.0 {
        return f64::INFINITY;
    }
    if z >= 10.0 {
        return (z - 0.5) * z.ln() - z + HALF_LN_2PI + stirling_correction(z);
    }
    if z < 0.5 {
        // Γ(z) = Γ(z+1)/z keeps the Lanczos sum in its accurate range and
        // is exact for tiny z (ln Γ(z) ≈ −ln z).
        return lanczos_ln_gamma(z + 1.0) - z.ln();
    }
    lanczos_ln_gamma(z)
}

/// Lanczos for `z ≥ 0.5`.
fn lanczos_ln_gamma(z: f64) -> f64 {
    let zm1 = z - 1.0;
    let mut sum = LANCZOS_COEF[0];
    for (i, c) in LANCZOS_COEF.iter().enumerate().skip(1) {
        sum += c / (zm1 + i as f64);
    }
    let t = zm1 + LANCZOS_G + 0.5;
    HALF_LN_2PI + (zm1 + 0.5) * t.ln() - t + sum.ln()
}

/// `ln Γ(z) − [(z − ½) ln z − z + ½ ln 2π]`, the remainder of Stirling's
/// formula. It is small (≈ 1/(12z)) for large z, which is what makes
/// [`ln_beta_remainder`] cancellation-free.
pub fn stirling_correction(z: f64) -> f64 {
    if z.is_nan() || z <= 0.0 {
        return f64::INFINITY;
    }
    if z >= 10.0 {
        // Asymptotic series; the first omitted term is < 2e-14 at z = 10.
        let r = 1.0 / z;
        let r2 = r * r;
        return r
            * (1.0 / 12.0
                - r2 * (1.0 / 360.0 - r2 * (1.0 / 1260.0 - r2 * (1.0 / 1680.0 - r2 / 1188.0))));
    }
    // Small z: no cancellation problem, so use the definition directly.
    ln_gamma(z) - ((z - 0.5) * z.ln() - z + HALF_LN_2PI)
}

/// The part of `ln B(u, v)` that remains after removing the two large
/// terms `u ln(u/w) + v ln(v/w)` (`w = u + v`):
///
/// `ln B(u, v) = u ln(u/w) + v ln(v/w) + ln_beta_remainder(u, v)`.
///
/// The remainder is `½ ln(w/(uv)) + ½ ln 2π + c(u) + c(v) − c(w)` with `c`
/// the Stirling correction, i.e. of order `ln n`, and has full relative
/// precision even for `u, v ≈ 10^19`.
pub fn ln_beta_remainder(u: f64, v: f64) -> f64 {
    let w = u + v;
    0.5 * (w.ln() - u.ln() - v.ln()) + HALF_LN_2PI + stirling_correction(u) + stirling_correction(v)
        - stirling_correction(w)
}

/// `ln B(u, v) = ln Γ(u) + ln Γ(v) − ln Γ(u + v)` for `u, v > 0`, computed
/// through [`ln_beta_remainder`] so that it is accurate for large arguments.
pub fn ln_beta(u: f64, v: f64) -> f64 {
    let w = u + v;
    u * (u / w).ln() + v * (v / w).ln() + ln_beta_remainder(u, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1.0)
    }

    #[test]
    fn constant_matches_definition() {
        assert!(close(HALF_LN_2PI, 0.5 * (2.0 * PI).ln(), 2e-16));
    }

    #[test]
    fn ln_gamma_known_values() {
        // Reference values from CPython's math.lgamma.
        let cases = [
            (0.5, 0.572_364_942_924_700_4),
            (1.0, 0.0),
            (1.5, -0.120_782_237_635_245_24),
            (2.0, 0.0),
            (2.5, 0.284_682_870_472_919_6),
            (3.0, std::f64::consts::LN_2),
            (7.3, 7.147_892_523_022_248),
            (10.0, 12.801_827_480_081_467),
            (25.5, 56.389_167_643_719_944),
            (100.0, 359.134_205_369_575_4),
            (1000.0, 5_905.220_423_209_181),
            (1e6, 12_815_504.569_147_611),
            (1e12, 26_631_021_115_915.652),
            (1e-9, 20.723_265_836_369_194),
            (1e-3, 6.907_178_885_383_854),
        ];
        for (z, want) in cases {
            let got = ln_gamma(z);
            assert!(close(got, want, 1e-13), "lnΓ({z}) = {got}, want {want}");
        }
    }

    #[test]
    fn ln_gamma_factorials() {
        let mut fact = 1.0_f64;
        for k in 1..30_u32 {
            // Γ(k) = (k−1)!
            let got = ln_gamma(f64::from(k));
            assert!(
                close(got, fact.ln(), 1e-13),
                "k={k}: {got} vs {}",
                fact.ln()
            );
            fact *= f64::from(k);
        }
    }

    #[test]
    fn ln_gamma_recurrence_across_branches() {
        // Γ(z+1) = zΓ(z) must hold across the Lanczos/Stirling switch at 10
        // and the shift below 0.5.
        let mut z = 0.01;
        while z < 40.0 {
            let lhs = ln_gamma(z + 1.0);
            let rhs = ln_gamma(z) + z.ln();
            assert!(close(lhs, rhs, 1e-13), "z={z}: {lhs} vs {rhs}");
            z *= 1.37;
        }
    }

    #[test]
    fn stirling_correction_is_continuous_at_switch() {
        let below = ln_gamma(9.999_999)
            - ((9.999_999 - 0.5) * 9.999_999_f64.ln() - 9.999_999 + HALF_LN_2PI);
        let above = stirling_correction(10.0);
        assert!((below - above).abs() < 1e-9, "{below} vs {above}");
        assert!((stirling_correction(1e6) - 1.0 / 12e6).abs() < 1e-18);
    }

    #[test]
    fn ln_beta_known_values() {
        assert!(close(ln_beta(1.0, 1.0), 0.0, 1e-14));
        assert!(close(ln_beta(2.0, 3.0), (1.0_f64 / 12.0).ln(), 1e-14));
        assert!(close(ln_beta(0.5, 0.5), PI.ln(), 1e-14));
        // Against the plain definition where that is still accurate.
        for &(u, v) in &[(0.3, 7.0), (12.5, 3.25), (150.0, 2_000.0), (1e-6, 5.0)] {
            let direct = ln_gamma(u) + ln_gamma(v) - ln_gamma(u + v);
            assert!(close(ln_beta(u, v), direct, 1e-12), "B({u},{v})");
        }
    }

    #[test]
    fn ln_beta_remainder_large_arguments() {
        // For huge u, v the remainder tends to ½ ln(w/(uv)) + ½ ln 2π.
        let (u, v) = (3e18_f64, 7e18_f64);
        let w = u + v;
        let want = 0.5 * (w / (u * v)).ln() + HALF_LN_2PI;
        assert!((ln_beta_remainder(u, v) - want).abs() < 1e-12);
        assert!(ln_beta(u, v).is_finite());
    }

    #[test]
    fn invalid_arguments_do_not_panic() {
        assert_eq!(ln_gamma(0.0), f64::INFINITY);
        assert_eq!(ln_gamma(-1.0), f64::INFINITY);
        assert_eq!(ln_gamma(f64::NAN), f64::INFINITY);
        assert_eq!(stirling_correction(0.0), f64::INFINITY);
    }
}
