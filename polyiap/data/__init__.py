"""Training data: triplet sources, image transforms and the dataset the training loop reads."""

from torch.utils.data import Dataset

from polyiap.data.images import load_image
from polyiap.data.triplets import Triplet, TripletFields, read_triplets, split_by_image

__all__ = ["Triplet", "TripletDataset", "TripletFields", "load_image", "read_triplets", "split_by_image"]


class TripletDataset(Dataset):
    """Triplets with images loaded and transformed to ``resolution``."""

    def __init__(self, triplets: list[Triplet], resolution: int):
        self.triplets = triplets
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, index: int) -> dict:
        triplet = self.triplets[index]
        return {"pixels": load_image(triplet.image, self.resolution), "english": triplet.english,
                "target": triplet.target}
