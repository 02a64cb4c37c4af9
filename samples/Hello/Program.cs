using AttnCore;

var x = Tensor.Randn([4, 8], seed: 1);
var w = Tensor.Randn([8, 3], seed: 2).RequiresGrad_();
var loss = x.MatMul(w).Softmax(-1).Square().Sum();
loss.Backward();
Console.WriteLine(w.Grad);
