"""The networks the course trains: solvers (`nets`), the WGAN-GP (`gan`, notebook 03), the DDPM and its UNet
(`diffusion`, `unet`, notebook 06), its samplers (`samplers`) and classifier guidance (`guidance`, which notebook
07's DDGR replays with), the moving average of weights both generators draw from (`ema`), and what replay needs
from any generator (`generators`)."""
