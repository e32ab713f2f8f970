"""Recognise the CustomGBForce that OpenMM's ``implicit/*.xml`` files create, and read it.

OpenMM's ``hct.xml``, ``obc1.xml``, ``obc2.xml``, ``gbn.xml`` and ``gbn2.xml`` build a
``CustomGBForce`` from fixed expression templates (``openmm.app.internal.customgbforces``). A force
is accepted only if its computed values and energy terms match those templates exactly (up to
whitespace and the numbers they embed: dielectrics, kappa, offsets, the tanh polynomial, the neck
constants); per-atom parameters and the neck tables are read from the force itself. Anything else
raises :class:`UnsupportedForceError`.
"""

from __future__ import annotations

import re

import numpy as np
import openmm

from .errors import UnsupportedForceError
from .implicit import GeneralizedBornParameters, NeckIntegral

__all__ = ["read_custom_gb"]

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

_OBC_INTEGRAL = (
    "select(step(r+sr2-or1),0.5*(1/L-1/U+0.25*(r-sr2^2/r)*(1/(U^2)-1/(L^2))+0.5*log(L/U)/r),0);"
    "U=r+sr2;L=max(or1,D);D=abs(r-sr2)"
)
_NECK_INTEGRAL = (
    "Ivdw+neckScale*Ineck;"
    "Ineck=step(radius1+radius2+neckCut-r)*getm0(radindex1,radindex2)/(1+100*(r-getd0(radindex1,radindex2))^2"
    "+0.3*1000000*(r-getd0(radindex1,radindex2))^6);"
    "Ivdw=" + _OBC_INTEGRAL + ";radius1=or1+offset;radius2=or2+offset;"
    "neckScale={neck_scale};neckCut={neck_cutoff};offset={offset}"
)
_HCT_RADIUS = "1/(1/or-I)"
_TANH_RADIUS = "1/(1/or-tanh({polynomial})/radius);psi=I*or;radius=or+offset;offset={offset}"
_SETTINGS = ";solventDielectric={solvent};soluteDielectric={solute};kappa={kappa};offset={offset}"
#: Solvent screening of the self (distance B) and pair (distance f) terms: unscreened or Debye.
_SCREENING = {
    "self": ("1/solventDielectric", "exp(-kappa*B)/solventDielectric"),
    "pair": ("1/solventDielectric", "exp(-kappa*f)/solventDielectric"),
}
_SELF_TERM = "-0.5*{coulomb}*(1/soluteDielectric-{screening})*charge^2/B" + _SETTINGS
_PAIR_TERM = (
    "-{coulomb}*(1/soluteDielectric-{screening})*charge1*charge2/f;f=sqrt(r^2+B1*B2*exp(-r^2/(4*B1*B2)))"
    + _SETTINGS
)
_SURFACE_TERM = "{surface}*(radius+{probe})^2*(radius/B)^6;radius=or+offset" + _SETTINGS
_POLYNOMIAL_TERM = re.compile(rf"([-+]?)(?:({_NUMBER}|[A-Za-z_]\w*)\*)?psi(?:\^([23]))?")


def _pattern(template: str) -> re.Pattern[str]:
    """A regex matching ``template`` literally, with ``{name}`` capturing a number (or, for
    ``polynomial`` and ``screening``, any text)."""
    parts = re.split(r"\{(\w+)\}", template)
    regex = ""
    for k, part in enumerate(parts):
        if k % 2 == 0:
            regex += re.escape(part)
        elif part in ("polynomial", "screening"):
            regex += rf"(?P<{part}>.+?)"
        else:
            regex += rf"(?P<{part}>{_NUMBER})" if f"(?P<{part}>" not in regex else rf"(?P={part})"
    return re.compile(regex + r"\Z")


def _match(template: str, expression: str) -> dict[str, str] | None:
    found = _pattern(template).match(re.sub(r"\s+", "", expression))
    return None if found is None else found.groupdict()


def _refuse(reason: str) -> UnsupportedForceError:
    return UnsupportedForceError(
        f"CustomGBForce {reason}; the torch force field reproduces only the "
        "HCT/OBC1/OBC2/GBn/GBn2 "
        "forces of OpenMM's implicit/*.xml without cutoff (use the OpenMM bridge)"
    )


def _tanh_coefficients(
    polynomial: str, per_atom: dict[str, np.ndarray], n_atoms: int
) -> np.ndarray:
    """(c1, c2, c3) per atom of tanh(c1 psi + c2 psi^2 + c3 psi^3), shape ``(N, 3)``."""
    coefficients = np.zeros((n_atoms, 3))
    position = 0
    for term in _POLYNOMIAL_TERM.finditer(polynomial):
        if term.start() != position or term.end() == position:
            break
        sign, factor, power = term.groups()
        if factor is None:
            value: np.ndarray | float = 1.0
        elif factor in per_atom:
            value = per_atom[factor]
        elif re.fullmatch(_NUMBER, factor):
            value = float(factor)
        else:
            raise _refuse(f"has an unknown coefficient {factor!r} in its Born radius polynomial")
        coefficients[:, int(power or 1) - 1] += -value if sign == "-" else value
        position = term.end()
    if position != len(polynomial):
        raise _refuse(f"has an unrecognised Born radius polynomial {polynomial!r}")
    return coefficients


def _per_atom_parameters(force: openmm.CustomGBForce) -> dict[str, np.ndarray]:
    names = [
        force.getPerParticleParameterName(k) for k in range(force.getNumPerParticleParameters())
    ]
    values = np.array(
        [force.getParticleParameters(a) for a in range(force.getNumParticles())], dtype=np.float64
    )
    return {name: values[:, k] for k, name in enumerate(names)}


def _neck_tables(
    force: openmm.CustomGBForce, per_atom: dict[str, np.ndarray], neck: dict[str, str]
) -> NeckIntegral:
    tables: dict[str, np.ndarray] = {}
    for k in range(force.getNumTabulatedFunctions()):
        function = force.getTabulatedFunction(k)
        if not isinstance(function, openmm.Discrete2DFunction):
            raise _refuse("has a tabulated function that is not a Discrete2DFunction")
        xsize, ysize, values = function.getFunctionParameters()
        # OpenMM: values[x + xsize*y] = f(x, y); store f[x, y].
        tables[force.getTabulatedFunctionName(k)] = (
            np.asarray(values, dtype=np.float64).reshape(ysize, xsize).T
        )
    if set(tables) != {"getm0", "getd0"} or "radindex" not in per_atom:
        raise _refuse("lacks the neck tables getm0/getd0 or the radindex parameter")
    index = per_atom["radindex"].astype(np.int64)
    if index.min() < 0 or index.max() >= min(tables["getm0"].shape + tables["getd0"].shape):
        raise _refuse("has radindex values outside its neck tables")
    return NeckIntegral(
        float(neck["neck_scale"]),
        float(neck["neck_cutoff"]),
        index,
        tables["getm0"],
        tables["getd0"],
    )


def read_custom_gb(force: openmm.CustomGBForce) -> GeneralizedBornParameters:
    """Read a ``CustomGBForce`` created by OpenMM's ``implicit/{hct,obc1,obc2,gbn,gbn2}.xml``.

    Raises:
        UnsupportedForceError: For a cutoff, global parameters, or expressions that differ from
            OpenMM's templates.
    """
    if force.getNonbondedMethod() != openmm.CustomGBForce.NoCutoff:
        raise _refuse("uses a cutoff")
    if force.getNumGlobalParameters() or force.getNumEnergyParameterDerivatives():
        raise _refuse("has global parameters")
    values = [force.getComputedValueParameters(k) for k in range(force.getNumComputedValues())]
    if [(name, kind) for name, _, kind in values] != [
        ("I", openmm.CustomGBForce.ParticlePairNoExclusions),
        ("B", openmm.CustomGBForce.SingleParticle),
    ]:
        raise _refuse("does not compute exactly I (pairs) then B (per particle)")
    per_atom = _per_atom_parameters(force)
    if not {"charge", "or", "sr"} <= set(per_atom):
        raise _refuse("lacks the per-particle parameters charge, or, sr")
    n_atoms = force.getNumParticles()
    offsets: set[float] = set()
    neck = None
    if _match(_OBC_INTEGRAL, values[0][1]) is None:
        found = _match(_NECK_INTEGRAL, values[0][1])
        if found is None:
            raise _refuse("has an unrecognised descreening integral I")
        neck = _neck_tables(force, per_atom, found)
        offsets.add(float(found["offset"]))
    if _match(_HCT_RADIUS, values[1][1]) is not None:
        coefficients = None
    else:
        found = _match(_TANH_RADIUS, values[1][1])
        if found is None:
            raise _refuse("has an unrecognised Born radius expression B")
        coefficients = _tanh_coefficients(found["polynomial"], per_atom, n_atoms)
        offsets.add(float(found["offset"]))

    terms = {"self": None, "pair": None, "surface": None}
    expected = {
        "self": (_SELF_TERM, openmm.CustomGBForce.SingleParticle),
        "pair": (_PAIR_TERM, openmm.CustomGBForce.ParticlePairNoExclusions),
        "surface": (_SURFACE_TERM, openmm.CustomGBForce.SingleParticle),
    }
    for k in range(force.getNumEnergyTerms()):
        expression, kind = force.getEnergyTermParameters(k)
        for name, (template, template_kind) in expected.items():
            found = _match(template, expression)
            if found is not None and kind == template_kind and terms[name] is None:
                terms[name] = found
                break
        else:
            raise _refuse(f"has an unrecognised energy term {expression.split(';')[0]!r}")
    polar, pair, surface = terms["self"], terms["pair"], terms["surface"]
    if polar is None or pair is None:
        raise _refuse("lacks the polar self or pair energy term")
    settings = ("solvent", "solute", "kappa", "offset")
    if any(polar[key] != pair[key] for key in (*settings, "coulomb")) or (
        surface is not None and any(surface[key] != polar[key] for key in settings)
    ):
        raise _refuse("has energy terms with inconsistent settings")
    screened = float(polar["kappa"]) > 0
    for name, found in (("self", polar), ("pair", pair)):
        if found["screening"] != _SCREENING[name][screened]:
            raise _refuse(f"has an unrecognised solvent screening {found['screening']!r}")
    offsets.add(float(polar["offset"]))
    if len(offsets) != 1:
        raise _refuse("uses different radius offsets in different expressions")
    return GeneralizedBornParameters(
        force_name="CustomGBForce",
        charge=per_atom["charge"],
        offset_radius=per_atom["or"],
        scaled_radius=per_atom["sr"],
        offset=offsets.pop(),
        tanh_coefficients=coefficients,
        solute_dielectric=float(polar["solute"]),
        solvent_dielectric=float(polar["solvent"]),
        kappa=float(polar["kappa"]),
        coulomb_constant=float(polar["coulomb"]),
        surface_factor=None if surface is None else float(surface["surface"]),
        probe_radius=0.14 if surface is None else float(surface["probe"]),
        neck=neck,
        inner_correction=False,
    )
