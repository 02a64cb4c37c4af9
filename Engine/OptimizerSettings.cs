namespace AttnCore;

// The settings of one optimizer update, as the optimizers (AttnCore.Optim) hand them to Tensor.AdamUpdate_ and
// Tensor.SgdUpdate_ and those to every backend. They sit in AttnCore, beside the optimizer ops, so that the
// optimizers need nothing from AttnCore.Backends.

/// <summary>Hyper-parameters of one Adam/AdamW update (PyTorch's formulas; Step counts from 1).</summary>
public readonly record struct AdamHyper(double LearningRate, double Beta1, double Beta2, double Eps, double WeightDecay, bool Decoupled, long Step);

/// <summary>Hyper-parameters of one SGD update (PyTorch's formulas); FirstStep initialises the momentum buffer with the gradient.</summary>
public readonly record struct SgdHyper(double LearningRate, double Momentum, double Dampening, double WeightDecay, bool Nesterov, bool FirstStep);
