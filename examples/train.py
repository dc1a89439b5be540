#!/usr/bin/env python3

import torch
from nol_fast.data import create_data_loader
from nol_fast.models import create_model
from nol_fast.training import Trainer
from nol_fast.training.callbacks import *
from nol_fast.training.optimizers import create_optimizer, create_scheduler
from nol_fast.config import Config

def main():
    # Load configuration
    config = Config.load('config.yaml')
    
    # Setup device
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    
    # Create model
    model = create_model(config.model.model_type, config.model.__dict__)
    model = model.to(device)
    
    # Create data loaders
    train_loader = create_data_loader(config.data, split='train')
    val_loader = create_data_loader(config.data, split='val')
    
    # Create optimizer and scheduler
    optimizer = create_optimizer(
        model.parameters(),
        config.training.optimizer,
        config.training.learning_rate,
        config.training.weight_decay
    )
    
    scheduler = create_scheduler(
        optimizer,
        config.training.scheduler,
        config.training.warmup_steps
    )
    
    # Create callbacks
    callbacks = [
        EarlyStopping(
            patience=config.training.early_stopping_patience,
            monitor='val_loss'
        ),
        ModelCheckpoint(
            filepath='best_model.pt',
            monitor='val_loss',
            save_best_only=True
        ),
        MetricsTracker(),
        TensorBoardLogger(log_dir='runs/experiment'),
        MemoryProfiler()
    ]
    
    # Create trainer
    trainer = Trainer(
        model=model,
        train_loader=train_loader,
        val_loader=val_loader,
        optimizer=optimizer,
        scheduler=scheduler,
        device=device
    )
    
    # Train model
    history = trainer.train(
        epochs=config.training.epochs,
        callbacks=callbacks
    )
    
    print("Training completed!")
    print(f"Best validation loss: {min(history['val_loss']):.4f}")

if __name__ == "__main__":
    main()
