"""Analyzers: pure functions from a model (and its dataset) to frozen, typed results.

Each analyzer lives in its own file; `analyze` runs them all. The Fourier maths they share is in
`spectrum`. Nothing here imports plotly.
"""

from .ablation import ablate as ablate
from .accuracy import AccuracyResult as AccuracyResult
from .accuracy import accuracies as accuracies
from .analyze import Analysis as Analysis
from .analyze import analyze as analyze
from .batchnorm import BatchNormResult as BatchNormResult
from .batchnorm import batchnorm_factors as batchnorm_factors
from .dynamics import Dynamics as Dynamics
from .dynamics import Event as Event
from .dynamics import MemorizingFate as MemorizingFate
from .dynamics import NeuronDynamics as NeuronDynamics
from .dynamics import training_dynamics as training_dynamics
from .example_dynamics import ExampleDynamics as ExampleDynamics
from .example_dynamics import example_dynamics as example_dynamics
from .examples import ExampleAttribution as ExampleAttribution
from .examples import examples as examples
from .fourier import FourierResult as FourierResult
from .fourier import fourier as fourier
from .frequencies import NeuronFrequencies as NeuronFrequencies
from .frequencies import neuron_frequencies as neuron_frequencies
from .ipr import IPRResult as IPRResult
from .ipr import ipr_scores as ipr_scores
from .logits import CorruptedLogitsResult as CorruptedLogitsResult
from .logits import corrupted_logits as corrupted_logits
from .neurons import ClassEvidence as ClassEvidence
from .neurons import NeuronClasses as NeuronClasses
from .neurons import class_evidence as class_evidence
from .neurons import classify_neurons as classify_neurons
from .phase import PhaseResult as PhaseResult
from .phase import classify_phase as classify_phase
from .progress import ProgressCurves as ProgressCurves
from .progress import ProgressMeasures as ProgressMeasures
from .progress import progress_curves as progress_curves
from .progress import progress_measures as progress_measures
from .progress_phases import NandaPhases as NandaPhases
from .pruning import PruningCurve as PruningCurve
from .pruning import PruningResult as PruningResult
from .pruning import pruning_curves as pruning_curves
from .spectrum import fourier_basis as fourier_basis
from .spectrum import mean_ipr as mean_ipr
from .spectrum import neuron_ipr as neuron_ipr
